"""Builders for the server tests: a tiny real bundle and photos (as tests/test_personalize_api.py makes them),
a Personalizer + app over a gallery file, and a real uvicorn server on a free loopback port in a thread."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.test_personalize_api import NAMES, make_bundle, scene  # noqa: F401  (re-exported for the tests)


def write_photos(folder: Path, n: int = 3, fmt: str = "png") -> list[Path]:
    """`n` scene images (240×180) as files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"photo{i}.{fmt}"
        Image.fromarray(scene(i)).save(p)
        paths.append(p)
    return paths


def encoded(img: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def open_personalizer(bundle: Path, gallery: Path, **kw: Any) -> Any:
    """The test server's Personalizer: a random detector needs conf 0 to find anything; few boxes keep it fast."""
    from mocha.personalize.personalizer import Personalizer

    settings = {"conf": 0.0, "max_det": 20, "enroll_conf": 0.0, **kw}
    return Personalizer.load(bundle, gallery=gallery, **settings)


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
