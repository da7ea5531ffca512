"""The kopf wiring: indexes, one reconcile daemon per owner, and the events that wake them.

Every kind the operator reads registers here, in the tables below:

- :data:`OWNERS` (Agents, Models, MCPServers): an index, a daemon per object — its reconcile
  loop (:class:`~agentkube.operator.owners.Owners`) — and an event handler that wakes it;
- :data:`CHILDREN` (watched with the ``managed-by`` label, server-side): an index, and an event
  handler that wakes the owner named by the child's labels (:data:`OWNER_LABELS`) — so a deleted
  or hand-edited child is repaired, and a Deployment becoming available updates the Agent;
- :data:`SHARED` (one per namespace, only with shared memory): an index, and an event handler
  that wakes every Agent of the namespace, so a deleted memory Secret is made again.

A Model's or an MCPServer's event also wakes the Agents of its namespace that name it (an index
of Agents by what they refer to). The reconciles read the indexes
(:mod:`agentkube.operator.indexing`). No change handlers: kopf stores no progress and no
diff-base on the objects, so an unchanged reconcile writes nothing; its one write is the
finalizer of each owner (kopf stops a daemon before letting its object go). kopf re-lists
after a watch breaks, so an API server restart is survived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from agentkube.api.mcp import mcp_server_names
from agentkube.api.models import GROUP, VERSION
from agentkube.operator.indexing import IndexedCache, index_name, trim
from agentkube.operator.memory import SECRET_NAME as MEMORY_SECRET
from agentkube.operator.naming import (
    AGENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MCPSERVER_LABEL,
    MODEL_LABEL,
)
from agentkube.operator.owners import Owners

JSON = dict[str, Any]

Handler = Callable[..., Awaitable[Any]]
OWNERS = {"Agent": "agents", "Model": "models", "MCPServer": "mcpservers"}
OWNER_LABELS = (("Agent", AGENT_LABEL), ("Model", MODEL_LABEL), ("MCPServer", MCPSERVER_LABEL))
CHILDREN = {
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "ConfigMap": ("", "v1", "configmaps"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
    "Deployment": ("apps", "v1", "deployments"),
}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# Objects one per namespace, shared by its Agents: an event reconciles every Agent there. The
# watch names them (a field selector), so RBAC can grant exactly those names.
SHARED = {"Secret": ("", "v1", "secrets", f"metadata.name={MEMORY_SECRET}")}
FINALIZER = "ai.openvn/operator"
AGENTS_BY_REF = "agents_by_ref"  # (namespace, "Model" | "MCPServer", name) -> Agent names
AGENTS_BY_NAMESPACE = "agents_by_namespace"  # namespace -> Agent names


def kinds(*, shared: bool = False) -> dict[str, str]:
    """Every indexed kind and its plural (``shared``: :data:`SHARED` too)."""
    found = dict(OWNERS)
    found.update({kind: gvp[2] for kind, gvp in CHILDREN.items()})
    found.update({kind: gvpf[2] for kind, gvpf in SHARED.items()} if shared else {})
    return found


def configure(settings: kopf.OperatorSettings, *, shared: bool = False) -> None:
    """kopf settings the operator relies on (``shared``: it watches :data:`SHARED` too)."""
    # Events are posted by the reconciler, only on failures: kopf's would be extra writes.
    settings.posting.enabled = False
    # Agents, Models and MCPServers are named explicitly: no cluster-wide CRD watch, no RBAC for it.
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
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
    # A deleted owner's daemon exits at once (it waits on ``stopped``): wait for that in memory,
    # rather than kopf's default of touching the object to look again later (a write).
    settings.background.instant_exit_timeout = 5.0


def build_registry(
    owners: Owners, cache: IndexedCache, *, shared: bool = False
) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers bound to ``owners`` and ``cache``
    (``shared``: also the watches of :data:`SHARED`, which only the memory wiring needs)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    gvps = {kind: (GROUP, VERSION, plural) for kind, plural in OWNERS.items()} | CHILDREN
    gvps |= {kind: gvpf[:3] for kind, gvpf in SHARED.items()} if shared else {}
    for kind, (group, version, plural) in gvps.items():
        kopf.index(group, version, plural, registry=registry, id=index_name(plural))(_index(kind))
    kopf.index(GROUP, VERSION, "agents", registry=registry, id=AGENTS_BY_REF)(_agent_refs)
    kopf.index(GROUP, VERSION, "agents", registry=registry, id=AGENTS_BY_NAMESPACE)(_agent_ns)

    for kind, plural in OWNERS.items():
        # cancellation_timeout: cancelled if it did not exit on its own (mid-reconcile).
        kopf.daemon(
            GROUP, VERSION, plural, registry=registry, id=f"reconcile-{plural}",
            cancellation_timeout=5.0,
        )(_daemon(owners, cache, kind))  # fmt: skip
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"wake-{plural}")(
            _owner_event(owners, cache, kind)
        )
    for kind, (group, version, plural) in CHILDREN.items():
        kopf.on.event(group, version, plural, registry=registry, id=f"wake-by-{plural}")(
            _child_event(owners, cache, kind)
        )
    for kind, (group, version, plural, _) in SHARED.items() if shared else ():
        kopf.on.event(group, version, plural, registry=registry, id=f"wake-by-{plural}")(
            _shared_event(owners, cache, kind)
        )
    return registry


def _index(kind: str) -> Handler:
    async def index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, JSON]:
        return {(namespace or "", name): trim({**body, "kind": kind})}

    return index


async def _agent_refs(
    spec: kopf.Spec, namespace: str | None, name: str, **_: Any
) -> dict[Any, str]:
    refs = {(namespace or "", "Model", spec.get("model"))}
    tools = spec.get("tools") or []
    refs |= {(namespace or "", "MCPServer", server) for server in mcp_server_names(tools)}
    return dict.fromkeys(refs, name)


async def _agent_ns(namespace: str | None, name: str, **_: Any) -> dict[str, str]:
    return {namespace or "": name}


def _daemon(owners: Owners, cache: IndexedCache, kind: str) -> Handler:
    async def reconcile(
        namespace: str | None, name: str, stopped: kopf.DaemonStopped, **kwargs: Any
    ) -> None:
        cache.attach(kwargs)
        await owners.run((kind, namespace or "", name), stopped)

    return reconcile


def _owner_event(owners: Owners, cache: IndexedCache, kind: str) -> Handler:
    async def handle(event: JSON, namespace: str | None, name: str, **kwargs: Any) -> None:
        cache.attach(kwargs)
        ns = namespace or ""
        if event.get("type") == "DELETED":
            owners.forget((kind, ns, name))
        else:
            owners.wake((kind, ns, name))
        if kind in ("Model", "MCPServer"):
            for agent in kwargs[AGENTS_BY_REF].get((ns, kind, name), ()):
                owners.wake(("Agent", ns, agent))

    return handle


def _child_event(owners: Owners, cache: IndexedCache, kind: str) -> Handler:
    async def handle(namespace: str | None, name: str, labels: kopf.Labels, **kwargs: Any) -> None:
        cache.attach(kwargs)
        ns = namespace or ""
        cache.get(kind, ns, name)  # drops what the operator wrote, once the watch caught up
        for owner_kind, label in OWNER_LABELS:
            owner = labels.get(label)
            if owner:
                owners.wake((owner_kind, ns, owner))

    return handle


def _shared_event(owners: Owners, cache: IndexedCache, kind: str) -> Handler:
    async def handle(namespace: str | None, name: str, **kwargs: Any) -> None:
        cache.attach(kwargs)
        ns = namespace or ""
        cache.get(kind, ns, name)
        for agent in kwargs[AGENTS_BY_NAMESPACE].get(ns, ()):
            owners.wake(("Agent", ns, agent))

    return handle
