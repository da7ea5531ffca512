"""The proxy's connections to its one upstream: a small LIFO pool of httpcore connections.

httpx's client (and httpcore's own ``AsyncConnectionPool`` under it) is built for any number of
origins: per request it merges headers, builds a URL, logs a line, and walks every pooled
connection asking whether it expired. A sidecar talks to one origin, so this pool keeps only
idle ``httpcore.AsyncHTTPConnection`` objects of that origin on a stack: a request takes the most
recently used one (warm, and the others may expire), checks that one alone (the server may have
closed it while it idled: httpcore sees the socket readable), and puts it back once its response
is read or closed, if it is still reusable. There is no limit on connections in flight — the
proxy's clients bound that — only on the idle ones kept.

A request that fails on a *reused* connection before any response arrived (the server closed it
just as it was taken) is sent once more on a new connection: the upstream never saw a complete
request on a connection it had already closed. Failures on a new connection are the caller's.

:class:`Upstream` is the seam :func:`agentkube.sidecar.proxy.create_app` takes: this pool,
``httpcore.AsyncConnectionPool``, or a test's own.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Protocol

import httpcore

from agentkube.sidecar.network import AsyncioBackend

KEEPALIVE_EXPIRY_S = 60.0
MAX_IDLE = 64
# Errors that a keep-alive connection closed by the server shows before any response.
_STALE = (httpcore.RemoteProtocolError, httpcore.WriteError, httpcore.ReadError)


class Upstream(Protocol):
    """What the proxy sends its requests through (httpcore's request interface)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response: ...


class UpstreamPool:
    """Connections to ``origin`` (``scheme://host:port``), reused most-recent first."""

    def __init__(
        self,
        origin: str,
        *,
        max_idle: int = MAX_IDLE,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.origin = httpcore.URL(origin).origin
        self.max_idle = max_idle
        self.keepalive_expiry_s = keepalive_expiry_s
        self.ssl_context = ssl_context
        self.network_backend = network_backend or AsyncioBackend()
        self.idle: list[httpcore.AsyncHTTPConnection] = []
        self.opened = 0
        """Connections opened so far (for tests and the curious)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.origin != self.origin:
            raise ValueError(f"this pool serves {self.origin}, not {request.url.origin}")
        connection, reused = await self._take()
        try:
            response = await connection.handle_async_request(request)
        except _STALE:
            await connection.aclose()
            if not reused:
                raise
            connection = self._new()
            response = await self._send_or_close(connection, request)
        except BaseException:
            await connection.aclose()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_Returning(self, connection, response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.aclose()

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _take(self) -> tuple[httpcore.AsyncHTTPConnection, bool]:
        while self.idle:
            connection = self.idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection, True
            await connection.aclose()
        return self._new(), False

    def _new(self) -> httpcore.AsyncHTTPConnection:
        self.opened += 1
        return httpcore.AsyncHTTPConnection(
            self.origin,
            ssl_context=self.ssl_context,
            keepalive_expiry=self.keepalive_expiry_s,
            network_backend=self.network_backend,
        )

    async def _send_or_close(
        self, connection: httpcore.AsyncHTTPConnection, request: httpcore.Request
    ) -> httpcore.Response:
        try:
            return await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise

    async def _release(self, connection: httpcore.AsyncHTTPConnection) -> None:
        if connection.is_idle() and len(self.idle) < self.max_idle:
            self.idle.append(connection)
        else:
            await connection.aclose()


class _Returning:
    """A response body that gives its connection back to the pool once closed."""

    def __init__(
        self,
        pool: UpstreamPool,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self.pool, self.connection, self.response = pool, connection, response
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.response.aclose()
        except BaseException:
            await self.connection.aclose()
            raise
        await self.pool._release(self.connection)
