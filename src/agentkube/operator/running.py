"""Start the operator: build the client, cache, reconciler and kopf registry, and run kopf.

The lightkube client is built here (in-cluster ServiceAccount, else ``$KUBECONFIG``) and injected
into the apply layer; kopf logs in the same way for its watches. Prometheus metrics (writes by
verb and kind, reconciles) are served when a metrics port is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx2
import kopf
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from agentkube.background import running
from agentkube.operator.applying import CHILD_KINDS, Applier
from agentkube.operator.autoscaling_sync import KedaObjects
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import OperatorConfigError
from agentkube.operator.handlers import Controller, build_registry, configure
from agentkube.operator.incident_events import IncidentEvents
from agentkube.operator.knowledge_reconciling import KnowledgeBases
from agentkube.operator.knowledge_watch import SourceConfigMaps
from agentkube.operator.mcp_discovery import LiveDiscovery
from agentkube.operator.memory_access import NamespaceMemory
from agentkube.operator.memory_cleanup import OrphanedUsers, cleaning
from agentkube.operator.queueing import ReconcileQueue
from agentkube.operator.reconciling import Reconciler
from agentkube.operator.team_wiring import TeamWiring, refreshing

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class Operator:
    """Every part of a running operator, wired together (and reachable by tests)."""

    config: OperatorConfig
    client: AsyncClient
    cache: Cache = field(default_factory=Cache)
    applier: Applier = field(init=False)
    memory: NamespaceMemory | None = field(init=False)
    orphans: OrphanedUsers | None = field(init=False)
    sources: SourceConfigMaps = field(init=False)
    teams: TeamWiring = field(init=False)
    incidents: IncidentEvents | None = field(init=False)
    reconciler: Reconciler = field(init=False)
    queue: ReconcileQueue = field(init=False)
    controller: Controller = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.applier = Applier(self.client, field_manager=config.field_manager, clock=utcnow)
        redis = config.memory.redis if config.memory is not None else None
        self.memory = NamespaceMemory(redis, cache=self.cache, api=self.applier) if redis else None
        self.orphans = OrphanedUsers(self.memory, self.cache, self.applier) if self.memory else None
        self.sources = SourceConfigMaps(
            self.client, self.cache, self.applier, lambda ref: self.queue.submit(ref)
        )
        knowledge = KnowledgeBases(
            client=self.client,
            cache=self.cache,
            config=config,
            writer=self.applier,
            sources=self.sources,
        )
        keda = KedaObjects(self.client, self.cache, CHILD_KINDS, interval_s=config.resync_seconds)
        self.teams = TeamWiring(
            config=config,
            cache=self.cache,
            api=self.applier,
            keda=keda if self.memory is not None else None,
            queues=self.memory,
            submit=lambda ref: self.queue.submit(ref),
        )
        # Agents record incidents in shared memory's Redis; without it there is nothing to post.
        self.incidents = (
            IncidentEvents(
                cache=self.cache,
                source=self.memory,
                writer=self.applier,
                interval_s=config.incident_seconds,
            )
            if self.memory is not None
            else None
        )
        self.reconciler = Reconciler(
            cache=self.cache,
            applier=self.applier,
            config=config,
            memory=self.memory,
            discover=LiveDiscovery(self.client),
            knowledge=knowledge,
            teams=self.teams,
        )
        self.queue = ReconcileQueue(
            lambda ref: self.reconciler.reconcile(*ref),
            concurrency=config.max_concurrent_reconciles,
            retry_seconds=config.retry_seconds,
            max_retry_seconds=config.max_retry_seconds,
        )
        self.controller = Controller(
            self.cache,
            self.queue,
            resync_seconds=config.resync_seconds,
            released=self.orphans.released if self.orphans is not None else None,
        )

    async def run(
        self,
        *,
        namespaces: Collection[str] = (),
        stop_flag: asyncio.Event | None = None,
        ready_flag: asyncio.Event | None = None,
        liveness_endpoint: str | None = None,
    ) -> None:
        settings = kopf.OperatorSettings()
        shared = self.memory is not None
        configure(settings, shared=shared)
        try:
            async with (
                self.sources.watching(namespaces),
                refreshing(self.teams, self.queue.submit),
                running(self.incidents.run_forever() if self.incidents else None),
                cleaning(self.orphans, namespaces),
            ):
                await kopf.operator(
                    registry=build_registry(self.controller, shared=shared),
                    settings=settings,
                    standalone=True,
                    clusterwide=not namespaces,
                    namespaces=list(namespaces),
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                    liveness_endpoint=liveness_endpoint,
                )
        finally:
            if self.memory is not None:
                await self.memory.aclose()


def make_client(config: OperatorConfig, *, timeout_seconds: float | None = None) -> AsyncClient:
    """The client of the in-cluster ServiceAccount, else ``$KUBECONFIG``; one line if neither."""
    # A loaded API server (thousands of objects created at once) answers slowly: a timeout
    # here only turns into a retry that loads it more. (The admission webhook, which the API
    # server waits for only seconds, passes its own.)
    timeout = httpx2.Timeout(timeout_seconds or config.request_timeout_seconds)
    try:
        kubeconfig = KubeConfig.from_env()
    except (ConfigError, OSError) as e:
        raise OperatorConfigError(
            f"no usable Kubernetes configuration ({e}); run in a pod, or set KUBECONFIG"
        ) from e
    return AsyncClient(config=kubeconfig, field_manager=config.field_manager, timeout=timeout)


class OperatorMetrics(Collector):
    """Prometheus view of the operator's counters, read at scrape time."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        writes = CounterMetricFamily(
            "agentkube_operator_api_writes", "API writes by verb and kind", labels=["write"]
        )
        for what, count in sorted(self.operator.applier.writes.items()):
            writes.add_metric([what], count)
        yield writes
        yield CounterMetricFamily(
            "agentkube_operator_reconciles",
            "reconciles run",
            value=self.operator.queue.completed,
        )
        yield CounterMetricFamily(
            "agentkube_operator_reconcile_retries",
            "reconciles that failed (crashed, or a child not ready) and were retried later",
            value=self.operator.queue.retried,
        )
        yield GaugeMetricFamily(
            "agentkube_operator_queue_depth",
            "objects waiting for a reconcile (queued, or on a retry timer)",
            value=self.operator.queue.depth,
        )
        cached = GaugeMetricFamily(
            "agentkube_operator_cached_objects", "objects cached", labels=["kind"]
        )
        for kind in ("Agent", "Model", "MCPServer", "Deployment"):
            cached.add_metric([kind], self.operator.cache.count(kind))
        yield cached


def register_metrics(operator: Operator) -> None:
    REGISTRY.register(OperatorMetrics(operator))
