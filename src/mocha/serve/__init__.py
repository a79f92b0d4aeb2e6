"""mocha.serve — a local web page and REST API over one Personalizer (docs/serve.md).

`create_app(personalizer, max_upload_bytes=...)` (mocha.serve.app) builds the FastAPI app: `GET /` the page
(static/, no build step, nothing from a CDN), `GET /docs` the API reference rendered from `/openapi.json`,
`GET /health`, `GET|POST /instances`, `DELETE /instances/{name}`, `POST /detect`. `mocha serve` (mocha.serve.verb)
loads the Personalizer and runs it under uvicorn; `mocha bench serve` (mocha.serve.bench) measures it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # fastapi loads on first use, not when the CLI lists its verbs
        from mocha.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'mocha.serve' has no attribute {name!r}")
