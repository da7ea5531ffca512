"""The kopf wiring: indexes, one daemon per owner, and the events that wake the daemons.

- every watched kind has an index (:mod:`agentkube.operator.indexing`): the reconciles read it;
- each Agent, Model and MCPServer has a daemon, its reconcile loop
  (:class:`~agentkube.operator.owners.Owners`);
- an owner's event wakes its own daemon; a child's event (filtered server-side by the
  ``managed-by`` label) wakes its owner's — so a deleted or hand-edited child is repaired, and a
  Deployment becoming available updates the Agent's status;
- a Model's or an MCPServer's event also wakes the Agents of its namespace that name it (an
  index of Agents by what they refer to), and a namespace's memory Secret (only with shared
  memory configured) wakes the Agents of the namespace, so a deleted one is made again.

No change handlers: kopf stores no progress and no diff-base on the objects, so an unchanged
reconcile writes nothing. kopf re-lists after a watch breaks, so an API server restart is
survived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from agentkube.api.mcp import mcp_server_names
from agentkube.api.models import GROUP, VERSION
from agentkube.operator.handlers import (
    CHILDREN,
    OWNER_LABELS,
    OWNERS,
    SHARED,
    configure,
)
from agentkube.operator.indexing import IndexedCache, index_name, trim
from agentkube.operator.owners import Owners

JSON = dict[str, Any]
Handler = Callable[..., Awaitable[Any]]
FINALIZER = "ai.openvn/operator"
AGENTS_BY_REF = "agents_by_ref"  # (namespace, "Model" | "MCPServer", name) -> Agent names
AGENTS_BY_NAMESPACE = "agents_by_namespace"  # namespace -> Agent names


def kinds(*, shared: bool) -> dict[str, tuple[str, str, str]]:
    """Every indexed kind: (group, version, plural)."""
    found = {kind: (GROUP, VERSION, plural) for kind, plural in OWNERS.items()}
    found.update(CHILDREN)
    found.update({k: v[:3] for k, v in SHARED.items()} if shared else {})
    return found


def configure_kopf(settings: kopf.OperatorSettings, *, shared: bool = False) -> None:
    configure(settings, shared=shared)
    settings.persistence.finalizer = FINALIZER


def build_registry(
    owners: Owners, cache: IndexedCache, *, shared: bool = False
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    for kind, (group, version, plural) in kinds(shared=shared).items():
        kopf.index(group, version, plural, registry=registry, id=index_name(plural))(_index(kind))
    kopf.index(GROUP, VERSION, "agents", registry=registry, id=AGENTS_BY_REF)(_agent_refs)
    kopf.index(GROUP, VERSION, "agents", registry=registry, id=AGENTS_BY_NAMESPACE)(_agent_ns)

    for kind, plural in OWNERS.items():
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
    async def reconcile(namespace: str | None, name: str, **kwargs: Any) -> None:
        cache.attach(kwargs)
        await owners.run((kind, namespace or "", name))

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
