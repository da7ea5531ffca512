"""The RAG proxy as an ``httpx`` transport: the same enrichment, in process, with no port.

On one machine ``agentkube run`` / ``agent serve`` with ``spec.rag`` give the model client this
transport in front of the real one: chat completion requests go through :func:`prepare_chat`
exactly as they would through the sidecar, and responses (streams included) come back from the
upstream untouched but for the ``x-agentkube-rag-*`` headers.
"""

from __future__ import annotations

import httpx

from agentkube.sidecar.forwarding import ProxyConfig, prepare_chat, upstream_headers
from agentkube.sidecar.metrics import ProxyMetrics
from agentkube.sidecar.retrieval import Retriever


class EnrichingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        config: ProxyConfig,
        retriever: Retriever,
        inner: httpx.AsyncBaseTransport | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.config = config
        self.retriever = retriever
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.metrics = metrics or ProxyMetrics()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return await self.inner.handle_async_request(request)
        body = await request.aread()
        prepared = await prepare_chat(
            self.config, self.retriever, self.metrics, body, request.headers
        )
        if prepared.refusal is not None:
            status, error = prepared.refusal
            return httpx.Response(status, json=error, request=request)
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=upstream_headers(request.headers),
            content=prepared.body,
            extensions=request.extensions,
        )
        response = await self.inner.handle_async_request(outgoing)
        response.headers.update(prepared.response_headers)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
