"""The proxy's connections to its one upstream: a small LIFO pool of httpcore connections.

httpx's client (and httpcore's own ``AsyncConnectionPool`` under it) is built for any number of
origins: per request it merges headers, builds a URL, logs a line, and walks every pooled
connection asking whether it expired. A sidecar talks to one origin, so this pool keeps only
idle ``httpcore.AsyncHTTP11Connection`` objects of that origin on a stack: a request takes the most
recently used one (warm, and the others may expire), checks that one alone (the server may have
closed it while it idled: httpcore sees the socket readable), and puts it back once its response
is read or closed, if it is still reusable. There is no limit on connections in flight — the
proxy's clients bound that — only on the idle ones kept.

The connections are httpcore's HTTP/1.1 ones (h11 parses), opened by the pool itself (TCP, then
TLS for https) with a lock that never waits: httpcore's own (anyio's ``Lock``) yields to the
event loop on every acquire, contended or not, two loop turns per request, and a connection here
is lent to one request at a time, so there is nothing to wait for.

A request that fails on a *reused* connection before any response arrived (the server closed it
just as it was taken) is sent once more on a new connection: the upstream never saw a complete
request on a connection it had already closed. Failures on a new connection are the caller's.

:class:`Upstream` is the seam :func:`agentkube.sidecar.proxy.create_app` takes: this pool,
``httpcore.AsyncConnectionPool``, or a test's own.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any, Protocol

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
        self._tls: ssl.SSLContext | None = None
        self.network_backend = network_backend or AsyncioBackend()
        self.idle: list[httpcore.AsyncHTTP11Connection] = []
        self.opened = 0
        """Connections opened so far (for tests and the curious)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.origin != self.origin:
            raise ValueError(f"this pool serves {self.origin}, not {request.url.origin}")
        connection = await self._take()
        reused = connection is not None
        if connection is None:
            connection = await self._open(request)
        try:
            response = await connection.handle_async_request(request)
        except _STALE:
            await connection.aclose()
            if not reused:
                raise
            connection = await self._open(request)
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

    async def _take(self) -> httpcore.AsyncHTTP11Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _open(self, request: httpcore.Request) -> httpcore.AsyncHTTP11Connection:
        """A new connection, with the request's connect timeout for TCP and TLS alike."""
        self.opened += 1
        timeout = request.extensions.get("timeout", {}).get("connect")
        host = self.origin.host.decode("ascii")
        stream = await self.network_backend.connect_tcp(host, self.origin.port, timeout=timeout)
        if self.origin.scheme == b"https":
            try:
                stream = await stream.start_tls(
                    self._tls_context(), server_hostname=host, timeout=timeout
                )
            except BaseException:
                await stream.aclose()
                raise
        return _Connection(self.origin, stream, self.keepalive_expiry_s)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # The given context, or httpcore's default (certifi's CAs); HTTP/1.1 only.
            self._tls = self.ssl_context or httpcore.default_ssl_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    async def _send_or_close(
        self, connection: httpcore.AsyncHTTP11Connection, request: httpcore.Request
    ) -> httpcore.Response:
        try:
            return await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise

    async def _release(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        if connection.is_idle() and len(self.idle) < self.max_idle:
            self.idle.append(connection)
        else:
            await connection.aclose()


class _Returning:
    """A response body that gives its connection back to the pool once closed."""

    def __init__(
        self,
        pool: UpstreamPool,
        connection: httpcore.AsyncHTTP11Connection,
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


class _Lent:
    """The lock of a connection lent to one request at a time: it never waits (a second holder
    is a bug in the pool, and says so)."""

    held = False

    async def __aenter__(self) -> None:
        if self.held:
            raise RuntimeError("a pooled connection serves one request at a time")
        self.held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self.held = False


class _Connection(httpcore.AsyncHTTP11Connection):
    """httpcore's HTTP/1.1 connection on an open stream, with a :class:`_Lent` lock."""

    def __init__(
        self, origin: httpcore.Origin, stream: httpcore.AsyncNetworkStream, keepalive_expiry: float
    ) -> None:
        super().__init__(origin=origin, stream=stream, keepalive_expiry=keepalive_expiry)
        self._state_lock: Any = _Lent()  # httpcore's takes it around each request's start and end
