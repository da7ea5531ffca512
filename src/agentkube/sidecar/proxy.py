"""The RAG proxy as an ASGI app (Starlette) forwarding with ``httpx``.

Responses are streamed back as the upstream sends them (``aiter_raw``: no decoding, no
buffering), with the upstream's status and headers, plus the ``x-agentkube-rag-*`` headers; only a
small body of declared length that is not an event stream is relayed in one piece.
Request bodies are read with a bound (413 as soon as one passes it) and then forwarded whole:
they are JSON documents, and the chat ones must be parsed anyway. The upstream transport is
injectable, like every HTTP client of agentkube. Each request is a ``rag.proxy`` server span
continuing the caller's ``traceparent`` (its ``retrieval`` child times the search), and the
upstream gets the proxy span's context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agentkube.sidecar.errors import RetrievalFailed
from agentkube.sidecar.forwarding import (
    HOP_BY_HOP,
    ProxyConfig,
    error_body,
    prepare_chat,
    upstream_headers,
)
from agentkube.sidecar.metrics import ProxyMetrics
from agentkube.sidecar.retrieval import Retriever
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import continued, inject

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# No overall read timeout: a model may think for minutes between streamed tokens.
_DROPPED_RESPONSE_HEADERS = frozenset(h.encode() for h in HOP_BY_HOP - {"content-length"})
SMALL_BODY_BYTES = 1024 * 1024
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=30.0)


class BodyTooLarge(Exception):
    pass


async def read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


class Proxy:
    def __init__(
        self,
        config: ProxyConfig,
        retriever: Retriever,
        client: httpx.AsyncClient,
        metrics: ProxyMetrics,
    ) -> None:
        self.config = config
        self.retriever = retriever
        self.client = client
        self.metrics = metrics

    async def forward(
        self, request: Request, body: bytes, route: str, extra: dict[str, str]
    ) -> Response:
        url = self.config.upstream_root + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        outgoing = self.client.build_request(
            request.method, url, headers=inject(upstream_headers(request.headers)), content=body
        )
        started = time.perf_counter()
        try:
            upstream = await self.client.send(outgoing, stream=True)
        except httpx.TimeoutException as e:
            self.metrics.upstream_errors.inc()
            return _error(504, f"upstream {self.config.upstream} timed out: {e!r}", "upstream")
        except httpx.HTTPError as e:
            self.metrics.upstream_errors.inc()
            return _error(502, f"upstream {self.config.upstream} unreachable: {e!r}", "upstream")
        self.metrics.upstream_seconds.labels(route).observe(time.perf_counter() - started)
        response: Response
        if _small_whole_body(upstream):
            # A JSON answer of known, small length: relayed in one piece, which spares the
            # streaming machinery (a task group per response). Streams never take this path.
            try:
                body = b"".join([chunk async for chunk in upstream.aiter_raw()])
            except httpx.HTTPError as e:
                self.metrics.upstream_errors.inc()
                return _error(502, f"upstream {self.config.upstream} broke off: {e!r}", "upstream")
            finally:
                await upstream.aclose()
            response = Response(body, status_code=upstream.status_code)
        else:
            response = StreamingResponse(
                upstream.aiter_raw(),
                status_code=upstream.status_code,
                background=BackgroundTask(upstream.aclose),
            )
        # The body goes out as the upstream encoded it (raw), so its length and encoding hold.
        response.raw_headers = [
            (k, v) for k, v in upstream.headers.raw if k.lower() not in _DROPPED_RESPONSE_HEADERS
        ]
        response.raw_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        return response

    async def chat(self, request: Request) -> Response:
        with (
            continued(request.headers),
            spans.span("rag.proxy", kind=spans.SpanKind.SERVER) as span,
        ):
            body = await self._body(request)
            if isinstance(body, Response):
                return body
            prepared = await prepare_chat(
                self.config, self.retriever, self.metrics, body, request.headers
            )
            span.set_attribute(spans.RAG_OUTCOME, prepared.outcome)
            if prepared.refusal is not None:
                status, error = prepared.refusal
                spans.mark_failed(f"refused: {status}")
                return JSONResponse(error, status_code=status)
            return await self.forward(request, prepared.body, "chat", prepared.response_headers)

    async def other(self, request: Request) -> Response:
        with continued(request.headers), spans.span("rag.proxy", kind=spans.SpanKind.SERVER):
            body = await self._body(request)
            if isinstance(body, Response):
                return body
            return await self.forward(request, body, "other", {})

    async def _body(self, request: Request) -> bytes | Response:
        try:
            return await read_bounded(request, self.config.max_body_bytes)
        except BodyTooLarge:
            return _error(
                413,
                f"request body over {self.config.max_body_bytes} bytes; send less",
                "invalid_request_error",
            )
        except ClientDisconnect:
            return Response(status_code=499)

    async def ready(self, request: Request) -> Response:
        try:
            await self.retriever.check(self.config.collections)
        except RetrievalFailed as e:
            # Fail-open still serves (un-enriched), so it stays ready; fail-closed would refuse.
            status = 503 if self.config.fail_closed else 200
            return JSONResponse({"status": "degraded", "vectors": str(e)}, status_code=status)
        return JSONResponse({"status": "ready", "collections": list(self.config.collections)})

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _small_whole_body(upstream: httpx.Response) -> bool:
    length = upstream.headers.get("content-length", "")
    kind = upstream.headers.get("content-type", "")
    return length.isdigit() and int(length) <= SMALL_BODY_BYTES and "event-stream" not in kind


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(error_body(message, kind), status_code=status)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    config: ProxyConfig,
    open_retriever: Callable[[], AbstractAsyncContextManager[Retriever]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    metrics: ProxyMetrics | None = None,
) -> Starlette:
    """The proxy app; the retriever and the upstream client open with its lifespan."""
    metrics = metrics or ProxyMetrics()
    holder: dict[str, Proxy] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_retriever() as retriever,
            httpx.AsyncClient(transport=transport, timeout=UPSTREAM_TIMEOUT) as client,
        ):
            holder["proxy"] = Proxy(config, retriever, client, metrics)
            log.info("rag proxy for %s reading %s", config.upstream, ", ".join(config.collections))
            yield

    def bound(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            handler: Callable[[Request], Any] = getattr(holder["proxy"], name)
            response: Response = await handler(request)
            return response

        return endpoint

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", bound("ready"), methods=["GET"]),
        Route("/metrics", bound("metrics_page"), methods=["GET"]),
        Route("/v1/chat/completions", bound("chat"), methods=["POST"]),
        Route("/{path:path}", bound("other"), methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    return app
