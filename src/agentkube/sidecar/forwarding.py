"""The enrichment step of the proxy: what goes upstream for one chat completion request.

:func:`prepare_chat` takes a chat completion request as received (body bytes and headers) and
decides what goes upstream: the same bytes (opted out, no user text, not JSON — the upstream
answers malformed requests itself), or a body with the context message. It never raises for a
retrieval failure unless the proxy fails closed; the response headers it returns say what
happened.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentkube.api import sidecar_contract as sc
from agentkube.sidecar.enrichment import (
    DEFAULT_TEMPLATE,
    check_template,
    inject,
    narrowed,
    render_context,
    sources_header,
    user_query,
)
from agentkube.sidecar.errors import CollectionNotAllowed, RetrievalFailed, SidecarUserError
from agentkube.sidecar.metrics import ProxyMetrics
from agentkube.sidecar.retrieval import Retriever
from agentkube.telemetry import spans

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_OWN_REQUEST_HEADERS = frozenset({sc.HEADER_RAG, sc.HEADER_COLLECTION})

Outcome = Literal["enriched", "no_context", "passthrough", "failed_open", "refused"]


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    upstream: str
    collections: tuple[str, ...]
    top_k: int = sc.DEFAULT_TOP_K
    fail_closed: bool = False
    template: str = DEFAULT_TEMPLATE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if not self.collections:
            raise SidecarUserError("--collection is required: name the collection to read")
        if not self.upstream.startswith(("http://", "https://")):
            raise SidecarUserError(
                f"--upstream {self.upstream!r} must be an http:// or https:// URL"
            )
        if self.top_k < 1:
            raise SidecarUserError(f"--top-k must be at least 1, not {self.top_k}")
        check_template(self.template)

    @property
    def upstream_root(self) -> str:
        """The upstream without a trailing ``/v1``: the proxy's own paths (``/v1/...``) are
        appended to it, so ``--upstream http://model:8000/v1`` and ``http://model:8000`` mean
        the same server."""
        root = self.upstream.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root


@dataclass(frozen=True, kw_only=True)
class Prepared:
    body: bytes
    outcome: Outcome
    response_headers: dict[str, str] = field(default_factory=dict)
    refusal: tuple[int, dict[str, Any]] | None = None
    """(status, OpenAI-style error body) when the request must not go upstream."""


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape, so clients report the proxy's refusals like the model's."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def upstream_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers as the upstream should get them: authorization and the rest kept,
    hop-by-hop headers and the proxy's own request headers dropped."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in _OWN_REQUEST_HEADERS
    }


def _parse(body: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
    if headers.get("content-encoding"):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("messages"), list):
        return None
    return parsed


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def prepare_chat(
    config: ProxyConfig,
    retriever: Retriever,
    metrics: ProxyMetrics,
    body: bytes,
    headers: Mapping[str, str],
) -> Prepared:
    """What to forward for one ``/v1/chat/completions`` request, and the headers to add."""
    prepared = await _prepare(config, retriever, metrics, body, _lower(headers))
    metrics.outcome(prepared.outcome).inc()
    return prepared


def _passthrough(body: bytes) -> Prepared:
    return Prepared(body=body, outcome="passthrough", response_headers={sc.HEADER_CHUNKS: "0"})


def _admit(
    config: ProxyConfig, body: bytes, headers: Mapping[str, str]
) -> Prepared | tuple[tuple[str, ...], dict[str, Any], str]:
    """A request that goes no further than this (passed through or refused), or what to
    retrieve for it: (collections, parsed body, query)."""
    if headers.get(sc.HEADER_RAG, "").strip().lower() == "off":
        return _passthrough(body)
    try:
        collections = narrowed(config.collections, headers.get(sc.HEADER_COLLECTION))
    except CollectionNotAllowed as e:
        return Prepared(
            body=body,
            outcome="refused",
            refusal=(403, error_body(str(e), "permission_error", "collection_not_allowed")),
        )
    parsed = _parse(body, headers)
    query = user_query(parsed["messages"]) if parsed is not None else ""
    if parsed is None or not query:
        return _passthrough(body)
    return collections, parsed, query


async def _prepare(
    config: ProxyConfig,
    retriever: Retriever,
    metrics: ProxyMetrics,
    body: bytes,
    headers: Mapping[str, str],
) -> Prepared:
    admitted = _admit(config, body, headers)
    if isinstance(admitted, Prepared):
        return admitted
    collections, parsed, query = admitted
    started = time.perf_counter()
    attributes = {spans.OPERATION: "retrieval", spans.DATA_SOURCE: ",".join(collections)}
    with spans.span(f"retrieval {','.join(collections)}", attributes=attributes) as span:
        try:
            passages = await retriever.retrieve(collections, query, config.top_k)
        except RetrievalFailed as e:
            metrics.retrieval_failures.inc()
            spans.mark_failed(str(e))
            return _failed(config, body, e)
        finally:
            metrics.retrieval_seconds.observe(time.perf_counter() - started)
        span.set_attribute(spans.CHUNKS, len(passages))
    if not passages:
        return Prepared(body=body, outcome="no_context", response_headers={sc.HEADER_CHUNKS: "0"})
    text = render_context(passages, collections, config.template)
    metrics.chunks_injected.inc(len(passages))
    return Prepared(
        body=json.dumps(inject(parsed, text), ensure_ascii=False).encode(),
        outcome="enriched",
        response_headers={
            sc.HEADER_CHUNKS: str(len(passages)),
            sc.HEADER_SOURCES: sources_header(p.source for p in passages),
        },
    )


def _failed(config: ProxyConfig, body: bytes, error: RetrievalFailed) -> Prepared:
    if config.fail_closed:
        log.error("refused a request (fail-closed): %s", error)
        return Prepared(
            body=body,
            outcome="refused",
            refusal=(503, error_body(str(error), "rag_unavailable", "retrieval_failed")),
        )
    log.warning("forwarding un-enriched (fail-open): %s", error)
    return Prepared(
        body=body,
        outcome="failed_open",
        response_headers={sc.HEADER_CHUNKS: "0", sc.HEADER_WARNING: _ascii(str(error))},
    )


def _ascii(text: str, limit: int = 300) -> str:
    return text.encode("ascii", "replace").decode()[:limit].replace("\r", " ").replace("\n", " ")
