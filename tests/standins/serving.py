"""Run an ASGI app on a real uvicorn server on loopback, in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn


@contextmanager
def serve(
    app: Any,
    *,
    startup_timeout: float = 20.0,
    tls: tuple[Path, Path] | None = None,
    port: int = 0,
    http: Any = "auto",
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Yield the server's base URL (``http://HOST:PORT``, or ``https://`` with ``tls``, a
    (certificate, key) pair); stop it on exit. ``host`` another local address, e.g. the real
    node's IP, which its pods reach."""
    cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=cert,
        ssl_keyfile=key,
        http=http,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start (see the log above)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def raw_request(url: str, head: bytes) -> socket.socket:
    """A socket to the server at ``url`` that has sent ``head`` (bytes on the wire, as is)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head)
    return sock


def response_status(sock: socket.socket) -> int:
    """The status code of the first response line the server sends on ``sock``."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])
