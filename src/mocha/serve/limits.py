"""The request-size limit, enforced before any route (or the multipart parser) sees the body."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a few phone photos per request


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` gets a 413 naming the limit; the app never runs for it.

    A declared Content-Length is refused at once; a body without one (chunked) is read up to the limit and
    then refused, so nothing larger than the limit is ever held in memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send, None)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        whole, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if sent:  # after the body the app may wait for a disconnect
                return await receive()
            sent = True
            return {"type": "http.request", "body": whole, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, declared: int | None) -> None:
        got = f"{declared} bytes" if declared is not None else "more than that"
        detail = f"body: request too large ({got}); the limit is {self.max_bytes} bytes (mocha serve max_upload_mb=)"
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
