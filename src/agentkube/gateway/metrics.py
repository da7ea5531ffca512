"""The gateway's Prometheus metrics, on a registry of its own (served at ``GET /metrics``).

Executions are counted by outcome — ``ok``, ``exit_nonzero``, ``killed`` (timeout, memory,
output, pids), ``quota`` (429), ``unavailable`` (503), ``failed`` (500), ``abandoned`` (the
caller left) — and by backend; refusals before a sandbox starts are counted apart (``policy``,
``invalid``, ``forbidden``). Warm-pool hits, misses and size are read from the backend when
it keeps a pool (both backends count them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agentkube.sandbox.contract import ExecutionResult, Sandbox

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def backend_name(backend: Sandbox) -> str:
    """``local``, ``kubernetes``, … from the backend's class (``LocalSandbox`` → ``local``)."""
    name = type(backend).__name__.removesuffix("Sandbox").lower()
    return name or "sandbox"


def outcome_of(result: ExecutionResult) -> str:
    if result.killed_reason is not None:
        return "killed"
    return "ok" if result.exit_code == 0 else "exit_nonzero"


class _WarmPool(Collector):
    def __init__(self, backend: Sandbox, name: str) -> None:
        self._backend, self._name = backend, name

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        backend: Any = self._backend
        if not hasattr(backend, "warm_hits"):
            return
        for metric, what, value in (
            ("agentkube_gateway_warm_hits", "Executions a warm sandbox took", backend.warm_hits),
            ("agentkube_gateway_warm_misses", "Executions that found no warm sandbox (cold)",
             backend.warm_misses),
        ):  # fmt: skip
            family = CounterMetricFamily(metric, what, labels=["backend"])
            family.add_metric([self._name], value)
            yield family
        size = GaugeMetricFamily(
            "agentkube_gateway_warm_pool_ready", "Warm sandboxes ready now", labels=["backend"]
        )
        size.add_metric([self._name], backend.warm_count())
        yield size


class GatewayMetrics:
    def __init__(self, backend: Sandbox, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.backend = backend_name(backend)
        self.executions = Counter(
            "agentkube_gateway_executions",
            "Executions by outcome (ok, exit_nonzero, killed, quota, unavailable, failed, "
            "abandoned) and backend",
            ["outcome", "backend"],
            registry=r,
        )
        self.seconds = Histogram(
            "agentkube_gateway_execution_seconds",
            "Time from an admitted request to its result, by backend",
            ["backend"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.refusals = Counter(
            "agentkube_gateway_refusals",
            "Requests refused before a sandbox started: policy (above the policy's limits), "
            "invalid (not an ExecutionRequest), forbidden (caller not allowed), unauthenticated",
            ["reason"],
            registry=r,
        )
        r.register(_WarmPool(backend, self.backend))

    def executed(self, outcome: str, seconds: float) -> None:
        self.executions.labels(outcome, self.backend).inc()
        self.seconds.labels(self.backend).observe(seconds)
