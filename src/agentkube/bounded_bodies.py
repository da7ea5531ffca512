"""An ASGI middleware that bounds request bodies in size and in time, while they are read.

Every agentkube HTTP server (the agent API, the sandbox gateway) sits behind it, so one caller
cannot make a server hold a huge body in memory or keep a connection open by sending it slowly:

- a ``Content-Length`` above the cap is answered 413 before a byte of the body is read;
- a body without one (chunked) is counted as it arrives, and answered 413 the moment it passes
  the cap — the rest is never read, so at most the cap is ever held;
- each chunk must arrive within ``read_timeout_s``, else the request is answered 408.

Pure ASGI (no framework), so it wraps FastAPI apps and anything else alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class _Gone(Exception):
    """The client disconnected while sending its body."""


class BoundedBodies:
    """Wraps ``app``; bodies over ``max_bytes`` get 413, stalled bodies 408.

    The body is read here, up to the cap, and handed to ``app`` whole: the app never sees an
    oversized or half-sent body, and at most ``max_bytes`` of it is ever held.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_bytes:
                raise _Refused(413, f"the request body is over {self.max_bytes} bytes")
            body = await self._read(receive)
        except _Refused as refused:
            await _respond(send, refused.status, refused.detail)
            return
        except _Gone:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, whenever it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                raise _Refused(
                    408, f"the request body stalled for {self.read_timeout_s:g} s"
                ) from None
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _Refused(413, f"the request body is over {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _respond(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
