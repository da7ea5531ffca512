"""The RAG proxy as a plain ASGI app forwarding over httpcore (:mod:`agentkube.sidecar.upstream`).

Every request is one coroutine with no framework between uvicorn and it: a table of four own
routes (health, readiness, metrics, chat completions), everything else forwarded. Responses go
back as the upstream sends them, raw (no decoding, no buffering), with its status and headers
plus the ``x-agentkube-rag-*`` headers; only a small body of declared length that is not an
event stream is relayed in one piece. A stream is relayed chunk by chunk and stops, closing the
upstream response, as soon as the client goes away; an upstream that breaks off mid-stream
breaks the client's response off too (never a clean end on a truncated answer). Request bodies
are read with a bound (413 as soon as one passes it) and then forwarded whole: they are JSON
documents, and the chat ones must be parsed anyway. The upstream connection pool is
injectable (any httpcore request interface). Each request is a ``rag.proxy`` server span
continuing the caller's ``traceparent`` (its ``retrieval`` child times the search), and the
upstream gets the proxy span's context.

Starlette served this before; the framework's request and response objects and middleware stack,
and httpx's per-request client work, were most of the time the proxy added (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import httpcore
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentkube.api import sidecar_contract as sc
from agentkube.sidecar.errors import RetrievalFailed, UpstreamBrokeOff
from agentkube.sidecar.forwarding import HOP_BY_HOP, ProxyConfig, error_body, prepare_chat
from agentkube.sidecar.metrics import ProxyMetrics
from agentkube.sidecar.retrieval import Retriever
from agentkube.sidecar.upstream import Upstream, UpstreamPool
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import FIELDS, continued, inject

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SMALL_BODY_BYTES = 1024 * 1024
# No overall read timeout: a model may think for minutes between streamed tokens.
UPSTREAM_TIMEOUT = {"connect": 10.0, "read": None, "write": 60.0, "pool": 30.0}
_DROPPED_RESPONSE_HEADERS = frozenset(h.encode() for h in HOP_BY_HOP - {"content-length"})
_DROPPED_REQUEST_HEADERS = frozenset(
    h.encode() for h in (*HOP_BY_HOP, sc.HEADER_RAG, sc.HEADER_COLLECTION)
)
_TRACE_FIELDS = frozenset(f.encode() for f in FIELDS)
_JSON = [(b"content-type", b"application/json")]
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_bounded(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body, or :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def send_whole(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, document: object) -> None:
    await send_whole(send, status, _JSON, json.dumps(document).encode())


async def send_error(send: Send, status: int, message: str, kind: str) -> None:
    await send_json(send, status, error_body(message, kind))


class Proxy:
    def __init__(
        self,
        config: ProxyConfig,
        retriever: Retriever,
        upstream: Upstream,
        metrics: ProxyMetrics,
    ) -> None:
        self.config = config
        self.retriever = retriever
        self.upstream = upstream
        self.metrics = metrics
        root = httpcore.URL(config.upstream_root)
        self._scheme, self._host, self._port = root.scheme, root.host, root.port
        self._prefix = root.target.rstrip(b"/")
        self._host_header = root.host + (b":%d" % root.port if root.port else b"")
        self._upstream_seconds = {
            route: metrics.upstream_seconds.labels(route) for route in ("chat", "other")
        }

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method == "POST" and path == "/v1/chat/completions":
            await self.proxied(scope, receive, send, "chat")
        elif method == "GET" and path == "/healthz":
            await send_json(send, 200, {"status": "ok"})
        elif method == "GET" and path == "/readyz":
            await self.ready(send)
        elif method == "GET" and path == "/metrics":
            page = generate_latest(self.metrics.registry)
            await send_whole(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], page)
        else:
            await self.proxied(scope, receive, send, "other")

    async def proxied(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        raw: Headers = scope["headers"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        with continued(headers), spans.span("rag.proxy", kind=spans.SpanKind.SERVER) as span:
            try:
                body = await read_bounded(
                    receive, headers.get("content-length"), self.config.max_body_bytes
                )
            except BodyTooLarge:
                limit = self.config.max_body_bytes
                message = f"request body over {limit} bytes; send less"
                await send_error(send, 413, message, "invalid_request_error")
                return
            except ClientGone:
                return
            extra: dict[str, str] = {}
            if route == "chat":
                prepared = await prepare_chat(
                    self.config, self.retriever, self.metrics, body, headers
                )
                span.set_attribute(spans.RAG_OUTCOME, prepared.outcome)
                if prepared.refusal is not None:
                    status, error = prepared.refusal
                    spans.mark_failed(f"refused: {status}")
                    await send_json(send, status, error)
                    return
                body, extra = prepared.body, prepared.response_headers
            await self.forward(scope, receive, send, body, route=route, extra=extra)

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        *,
        route: str,
        extra: dict[str, str],
    ) -> None:
        request = self._request(scope, body)
        started = time.perf_counter()
        try:
            upstream = await self.upstream.handle_async_request(request)
        except httpcore.TimeoutException as e:
            self.metrics.upstream_errors.inc()
            message = f"upstream {self.config.upstream} timed out: {e!r}"
            await send_error(send, 504, message, "upstream")
            return
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as e:
            self.metrics.upstream_errors.inc()
            message = f"upstream {self.config.upstream} unreachable: {e!r}"
            await send_error(send, 502, message, "upstream")
            return
        self._upstream_seconds[route].observe(time.perf_counter() - started)
        # The body goes out as the upstream encoded it (raw), so its length and encoding hold.
        headers, whole = _relayed(upstream.headers)
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        if whole:
            await self._relay_whole(send, upstream, headers)
        else:
            await self._relay_stream(receive, send, upstream, headers)

    def _request(self, scope: Scope, body: bytes) -> httpcore.Request:
        target = self._prefix + scope["raw_path"] if scope.get("raw_path") else None
        if target is None:
            target = self._prefix + scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        trace = inject()
        headers = [(b"host", self._host_header)]
        headers += [
            (k, v)
            for k, v in scope["headers"]
            if k not in _DROPPED_REQUEST_HEADERS and not (trace and k in _TRACE_FIELDS)
        ]
        headers += [(k.encode(), v.encode()) for k, v in trace.items()]
        if body or scope["method"] not in _NO_BODY_METHODS:
            headers.append((b"content-length", str(len(body)).encode()))
        url = httpcore.URL(scheme=self._scheme, host=self._host, port=self._port, target=target)
        return httpcore.Request(
            scope["method"],
            url,
            headers=headers,
            content=body,
            extensions={"timeout": UPSTREAM_TIMEOUT},
        )

    async def _relay_whole(self, send: Send, upstream: httpcore.Response, headers: Headers) -> None:
        # A JSON answer of known, small length: relayed in one piece.
        try:
            body = await upstream.aread()
        except httpcore.TimeoutException as e:
            self.metrics.upstream_errors.inc()
            message = f"upstream {self.config.upstream} broke off: {e!r}"
            await send_error(send, 504, message, "upstream")
            return
        except (httpcore.NetworkError, httpcore.ProtocolError) as e:
            self.metrics.upstream_errors.inc()
            message = f"upstream {self.config.upstream} broke off: {e!r}"
            await send_error(send, 502, message, "upstream")
            return
        finally:
            await upstream.aclose()
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _relay_stream(
        self, receive: Receive, send: Send, upstream: httpcore.Response, headers: Headers
    ) -> None:
        """Chunks as they come; the client going away cancels the relay (and so the upstream
        read, which may be waiting minutes for a model's next token)."""
        relay = asyncio.current_task()
        assert relay is not None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            relay.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            async for chunk in upstream.aiter_stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watcher.cancel()
            await send({"type": "http.response.body", "body": b""})
        except asyncio.CancelledError:
            if not watcher.done() or relay.uncancel() > 0:
                raise  # cancelled from outside, not by the client leaving
            log.info("client left a stream from %s; upstream response closed", self.config.upstream)
        except (httpcore.NetworkError, httpcore.ProtocolError) as e:
            self.metrics.upstream_errors.inc()
            # The response has started: all that is left is to break it off too.
            raise UpstreamBrokeOff(
                f"upstream {self.config.upstream} broke off a stream: {e!r}"
            ) from e
        finally:
            watcher.cancel()
            await upstream.aclose()

    async def ready(self, send: Send) -> None:
        try:
            await self.retriever.check(self.config.collections)
        except RetrievalFailed as e:
            # Fail-open still serves (un-enriched), so it stays ready; fail-closed would refuse.
            status = 503 if self.config.fail_closed else 200
            await send_json(send, status, {"status": "degraded", "vectors": str(e)})
            return
        await send_json(
            send, 200, {"status": "ready", "collections": list(self.config.collections)}
        )


def _relayed(headers: Headers) -> tuple[Headers, bool]:
    """The upstream's response headers less the hop-by-hop ones, and whether its body is small,
    of declared length and not an event stream (so relayed in one piece); in one pass."""
    kept: Headers = []
    length = kind = b""
    for key, value in headers:
        name = key.lower()
        if name == b"content-length":
            length = value
        elif name == b"content-type":
            kind = value
        elif name in _DROPPED_RESPONSE_HEADERS:
            continue
        kept.append((key, value))
    whole = length.isdigit() and int(length) <= SMALL_BODY_BYTES and b"event-stream" not in kind
    return kept, whole


class ProxyApp:
    """The ASGI app: the retriever and the upstream pool open with its lifespan."""

    def __init__(
        self,
        config: ProxyConfig,
        open_retriever: Callable[[], AbstractAsyncContextManager[Retriever]],
        upstream: Upstream | None,
        metrics: ProxyMetrics,
    ) -> None:
        self.config = config
        self.open_retriever = open_retriever
        self.upstream = upstream
        self.metrics = metrics
        self.proxy: Proxy | None = None
        self._stack = AsyncExitStack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            assert self.proxy is not None, "the proxy serves only once its lifespan started"
            await self.proxy.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as e:
                    log.exception("the rag proxy could not start")
                    await self._stack.aclose()
                    await send({"type": "lifespan.startup.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        retriever = await self._stack.enter_async_context(self.open_retriever())
        upstream = self.upstream  # an injected one is its owner's to close
        if upstream is None:
            upstream = await self._stack.enter_async_context(
                UpstreamPool(self.config.upstream_root)
            )
        self.proxy = Proxy(self.config, retriever, upstream, self.metrics)
        log.info(
            "rag proxy for %s reading %s", self.config.upstream, ", ".join(self.config.collections)
        )


def create_app(
    config: ProxyConfig,
    open_retriever: Callable[[], AbstractAsyncContextManager[Retriever]],
    *,
    upstream: Upstream | None = None,
    metrics: ProxyMetrics | None = None,
) -> ProxyApp:
    """The proxy app; ``upstream`` defaults to an :class:`UpstreamPool` of the configured
    upstream, opened and closed with the app's lifespan like the retriever."""
    return ProxyApp(config, open_retriever, upstream, metrics or ProxyMetrics())
