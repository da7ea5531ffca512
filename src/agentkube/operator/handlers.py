"""The kopf wiring: watches feed the cache and ask for reconciles; nothing else lives here.

Only ``@kopf.on.event`` handlers are used, so kopf itself never writes to the objects (no
progress annotations, no finalizers): the operator's writes are exactly the reconciler's. Each
watch (Agents, Models, MCPServers, and the children, filtered server-side by the ``managed-by``
label):

- updates the :class:`~agentkube.operator.cache.Cache`;
- asks the :class:`~agentkube.operator.queueing.ReconcileQueue` to reconcile the owner — so a
  deleted or hand-edited child is repaired, and a Deployment becoming available updates the
  Agent's status;
- a Model's or an MCPServer's event also reconciles the Agents of its namespace that name it;
- a namespace's memory Secret (only with shared memory configured) reconciles its Agents, so a
  deleted one is made again;
- a deleted Agent or memory Secret is passed on to ``released`` (the namespace's Redis user may
  be unused now: :mod:`agentkube.operator.memory_cleanup`).

The user's ConfigMaps a KnowledgeBase names carry no label: they have a watch of their own
(:mod:`agentkube.operator.knowledge_watch`).

A periodic resync re-runs every reconcile as a safety net (cheap: unchanged objects cost no
request). kopf re-lists after a watch breaks, so an API server restart is survived.

A new kind registers here, in the tables below: an owner in :data:`OWNERS` (and its reconcile in
``Reconciler.reconcile``), a child kind in :data:`CHILDREN` (and ``applying.CHILD_KINDS``), a
per-namespace shared object in :data:`SHARED`. Why this engine and not kopf's daemons and
indexes: docs/architecture.md, "The engine".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from agentkube.api.models import GROUP, VERSION
from agentkube.operator.cache import Cache
from agentkube.operator.knowledge import KNOWLEDGEBASE_LABEL
from agentkube.operator.memory import SECRET_NAME as MEMORY_SECRET
from agentkube.operator.naming import (
    AGENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MCPSERVER_LABEL,
    MODEL_LABEL,
)
from agentkube.operator.queueing import ReconcileQueue, Ref

JSON = dict[str, Any]
log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]
OWNERS = {
    "Agent": "agents",
    "Model": "models",
    "MCPServer": "mcpservers",
    "KnowledgeBase": "knowledgebases",
}
OWNER_LABELS = (
    ("Agent", AGENT_LABEL),
    ("Model", MODEL_LABEL),
    ("MCPServer", MCPSERVER_LABEL),
    ("KnowledgeBase", KNOWLEDGEBASE_LABEL),
)
CHILDREN = {
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "ConfigMap": ("", "v1", "configmaps"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
    "Deployment": ("apps", "v1", "deployments"),
    "Job": ("batch", "v1", "jobs"),  # a KnowledgeBase's ingestion
}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# Objects one per namespace, shared by its Agents: an event reconciles every Agent there. The
# watch names them (a field selector), so RBAC can grant exactly those names.
SHARED = {"Secret": ("", "v1", "secrets", f"metadata.name={MEMORY_SECRET}")}


class Controller:
    """Routes watch events to the cache and the reconcile queue."""

    def __init__(
        self,
        cache: Cache,
        queue: ReconcileQueue,
        *,
        resync_seconds: float,
        released: Callable[[str], None] | None = None,
    ) -> None:
        self.cache = cache
        self.queue = queue
        self.resync_seconds = resync_seconds
        self.released = released  # a namespace lost an Agent or its memory Secret
        self._resync: asyncio.Task[None] | None = None

    def _record(self, kind: str, event: JSON) -> tuple[str, str, bool]:
        body = event["object"]
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        gone = event.get("type") == "DELETED"
        if gone:
            self.cache.forget(kind, namespace, name, meta.get("uid"))
        else:
            self.cache.observe(dict(body), kind)
        return namespace, name, gone

    async def on_owner(self, kind: str, event: JSON) -> None:
        namespace, name, gone = self._record(kind, event)
        ref: Ref = (kind, namespace, name)
        if gone:
            self.queue.forget(ref)
            if kind == "Agent" and self.released is not None:
                self.released(namespace)
        else:
            await self.queue.run(ref)
        if kind == "Model":
            for agent in self._agents_using(namespace, name):
                self.queue.submit(("Agent", namespace, agent))
        if kind == "MCPServer":
            for agent in self._agents_naming(namespace, f"mcp:{name}"):
                self.queue.submit(("Agent", namespace, agent))

    async def on_child(self, kind: str, event: JSON) -> None:
        namespace, _, _ = self._record(kind, event)
        labels = event["object"].get("metadata", {}).get("labels") or {}
        for owner_kind, label in OWNER_LABELS:
            owner = labels.get(label)
            if owner and self.cache.get(owner_kind, namespace, owner) is not None:
                await self.queue.run((owner_kind, namespace, owner))

    async def on_shared(self, kind: str, event: JSON) -> None:
        namespace, _, gone = self._record(kind, event)
        if gone and self.released is not None:
            self.released(namespace)
        for ns, name in self.cache.keys("Agent"):
            if ns == namespace:
                self.queue.submit(("Agent", ns, name))

    def _agents_using(self, namespace: str, model: str) -> list[str]:
        return [
            name
            for (ns, name), body in self.cache.items("Agent")
            if ns == namespace and body.get("spec", {}).get("model") == model
        ]

    def _agents_naming(self, namespace: str, tool: str) -> list[str]:
        return [
            name
            for (ns, name), body in self.cache.items("Agent")
            if ns == namespace and tool in (body.get("spec", {}).get("tools") or [])
        ]

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for kind in OWNERS:
                for namespace, name in self.cache.keys(kind):
                    self.queue.submit((kind, namespace, name))

    async def start(self) -> None:
        self._resync = asyncio.get_running_loop().create_task(self.resync_forever())

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self.queue.close()


def configure(settings: kopf.OperatorSettings, *, shared: bool = False) -> None:
    """kopf settings the operator relies on (``shared``: it watches :data:`SHARED` too)."""
    # Events are posted by the reconciler, only on failures: kopf's would be extra writes.
    settings.posting.enabled = False
    # Agents, Models and MCPServers are named explicitly: no cluster-wide CRD watch, no RBAC for it.
    settings.scanning.disabled = True
    for group, version, plural in CHILDREN.values():
        settings.watching.label_selectors[group, version, plural] = MANAGED_SELECTOR
    for group, version, plural, fields in SHARED.values() if shared else ():
        settings.watching.label_selectors[group, version, plural] = MANAGED_SELECTOR
        settings.watching.field_selectors[group, version, plural] = fields
    # Reconnect quickly after an API server restart; a watch is re-opened at least every 5 min.
    # A restarted API server refuses (403) until its RBAC caches are filled, which can take a
    # minute on a loaded machine: kopf gives up on a watch (and stops) only after ~2 minutes.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = [1, 1, 2, 3, 5, 10, 10, 10, 15, 15, 15, 15, 15]
    settings.batching.idle_timeout = 30.0


def build_registry(controller: Controller, *, shared: bool = False) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers bound to ``controller`` (``shared``: also
    the watches of :data:`SHARED`, which only the memory wiring needs)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def _startup(**_: Any) -> None:
        await controller.start()

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        await controller.stop()

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    for kind, plural in OWNERS.items():
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"watch-{plural}")(
            _owner_handler(controller, kind)
        )
    for kind, (group, version, plural) in CHILDREN.items():
        kopf.on.event(group, version, plural, registry=registry, id=f"watch-{plural}")(
            _child_handler(controller, kind)
        )
    for kind, (group, version, plural, _) in SHARED.items() if shared else ():
        kopf.on.event(group, version, plural, registry=registry, id=f"watch-{plural}")(
            _shared_handler(controller, kind)
        )
    return registry


def _owner_handler(controller: Controller, kind: str) -> Handler:
    async def handle(event: JSON, **_: Any) -> None:
        await controller.on_owner(kind, event)

    return handle


def _child_handler(controller: Controller, kind: str) -> Handler:
    async def handle(event: JSON, **_: Any) -> None:
        await controller.on_child(kind, event)

    return handle


def _shared_handler(controller: Controller, kind: str) -> Handler:
    async def handle(event: JSON, **_: Any) -> None:
        await controller.on_shared(kind, event)

    return handle
