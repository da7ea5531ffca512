"""The proxy's Prometheus metrics, on a registry of its own (one per app, so tests and several
proxies in one process never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "agentkube_rag_requests",
            "Chat completion requests by what the proxy did: enriched, no_context (nothing "
            "relevant), passthrough (no user text, opted out), failed_open, refused",
            ["outcome"],
            registry=r,
        )
        self.retrieval_seconds = Histogram(
            "agentkube_rag_retrieval_seconds",
            "Time to embed the query and search the collections",
            buckets=_FAST,
            registry=r,
        )
        self.chunks_injected = Counter(
            "agentkube_rag_chunks_injected", "Chunks injected into requests", registry=r
        )
        self.retrieval_failures = Counter(
            "agentkube_rag_retrieval_failures",
            "Retrievals that failed (store down, timeout); fail-open forwards un-enriched",
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "agentkube_rag_upstream_seconds",
            "Time from forwarding a request to the upstream's response headers",
            ["route"],
            buckets=_SLOW,
            registry=r,
        )
        self.upstream_errors = Counter(
            "agentkube_rag_upstream_errors",
            "Requests the upstream could not be reached for (answered 502/504)",
            registry=r,
        )
        self._outcomes: dict[str, Counter] = {}

    def outcome(self, name: str) -> Counter:
        """The requests counter of one outcome, bound once: ``labels()`` validates and looks
        its child up under a lock on every call, which every request would pay."""
        child = self._outcomes.get(name)
        if child is None:
            child = self._outcomes[name] = self.requests.labels(name)
        return child
