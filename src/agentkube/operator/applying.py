"""The thin layer that talks to the API server: server-side apply, status patches, Events.

Everything goes through an injected :class:`lightkube.AsyncClient`, so tests point it at the real
test control plane. Every write is counted by verb and kind (``writes``), which is how the tests
and the benchmark check that reconciling an unchanged object writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any, Protocol, cast

import httpx2 as httpx  # lightkube >= 1.0 speaks httpx2
from lightkube import ApiError, AsyncClient
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    PersistentVolumeClaim,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from agentkube.api.models import GROUP, VERSION
from agentkube.kube_errors import classify
from agentkube.operator.errors import NamespaceTerminating, RejectedByApi, TransientApiError
from agentkube.operator.status import timestamp

JSON = dict[str, Any]
log = logging.getLogger(__name__)

AgentResource = create_namespaced_resource(GROUP, VERSION, "Agent", "agents")
ModelResource = create_namespaced_resource(GROUP, VERSION, "Model", "models")
MCPServerResource = create_namespaced_resource(GROUP, VERSION, "MCPServer", "mcpservers")
KnowledgeBaseResource = create_namespaced_resource(
    GROUP, VERSION, "KnowledgeBase", "knowledgebases"
)
# KEDA's kinds (operator/autoscaling.py); served only where KEDA is installed.
ScaledObject = create_namespaced_resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
TriggerAuthentication = create_namespaced_resource(
    "keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications"
)

CHILD_KINDS: dict[str, type[NamespacedResource]] = {
    "ServiceAccount": ServiceAccount,
    "ConfigMap": ConfigMap,
    "PersistentVolumeClaim": PersistentVolumeClaim,
    "Service": Service,
    "NetworkPolicy": NetworkPolicy,
    "Deployment": Deployment,
    "Secret": Secret,  # a namespace's memory credentials (operator/memory_access.py)
    "Job": Job,  # a KnowledgeBase's ingestion (operator/knowledge.py)
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
}
OWNER_KINDS = {
    "Agent": AgentResource,
    "Model": ModelResource,
    "MCPServer": MCPServerResource,
    "KnowledgeBase": KnowledgeBaseResource,
}


# What a reconcile may read past the cache: a child (before its watch listed it), or what an
# Agent depends on (its Model, its MCPServers) before their watches listed them.
READABLE: dict[str, type[NamespacedResource]] = {**CHILD_KINDS, **OWNER_KINDS}


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Applier:
    """Writes objects with server-side apply as one field manager, counting every write."""

    def __init__(self, client: AsyncClient, *, field_manager: str, clock: Clock) -> None:
        self.client = client
        self.field_manager = field_manager
        self.clock = clock
        self.writes: Counter[str] = Counter()

    async def apply(self, obj: JSON) -> JSON:
        """Server-side apply ``obj`` (forcing ownership of its fields); the live object back."""
        kind, meta = obj["kind"], obj["metadata"]
        resource = CHILD_KINDS[kind]
        async with _translated(f"apply {kind} {meta['namespace']}/{meta['name']}"):
            live = await self.client.patch(
                resource,
                meta["name"],
                obj,
                namespace=meta["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=self.field_manager,
                force=True,
            )
        self.writes[f"apply {kind}"] += 1
        log.info("applied %s %s/%s", kind, meta["namespace"], meta["name"])
        return dict(cast(Any, live).to_dict())

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        """The live object, or None when there is none (a read, so not counted as a write)."""
        try:
            async with _translated(f"read {kind} {namespace}/{name}"):
                live = await self.client.get(READABLE[kind], name, namespace=namespace)
        except RejectedByApi as e:
            if _not_found(e):
                return None
            raise
        return dict(cast(Any, live).to_dict())

    async def any_in(self, kind: str, namespace: str) -> bool:
        """Whether ``namespace`` holds any object of ``kind`` (a list of at most one, not a
        write)."""
        resource = OWNER_KINDS.get(kind) or CHILD_KINDS[kind]
        async with _translated(f"list {kind} in {namespace}"):
            listed = self.client.list(resource, namespace=namespace, chunk_size=1)
            items = cast(AsyncGenerator[Any, None], aiter(listed))
            async with contextlib.aclosing(items):
                async for _ in items:
                    return True
        return False

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child the operator no longer renders (already gone is fine)."""
        resource = CHILD_KINDS[kind]
        try:
            async with _translated(f"delete {kind} {namespace}/{name}"):
                await self.client.delete(resource, name, namespace=namespace)
        except RejectedByApi as e:
            if _not_found(e):
                return
            raise
        self.writes[f"delete {kind}"] += 1
        log.info("deleted %s %s/%s", kind, namespace, name)

    async def patch_status(self, kind: str, namespace: str, name: str, status: JSON) -> str | None:
        """Merge-patch the status subresource of an Agent, Model or MCPServer; the object's
        resourceVersion after it."""
        resource = OWNER_KINDS[kind]
        async with _translated(f"update status of {kind} {namespace}/{name}"):
            live = await self.client.patch(
                resource.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=self.field_manager,
            )
        self.writes[f"status {kind}"] += 1
        log.info("updated status of %s %s/%s: %s", kind, namespace, name, sorted(status))
        meta = cast(Any, live).metadata
        return meta.resourceVersion if meta is not None else None

    async def post_event(self, owner: JSON, *, type: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``owner``; failing to post one only logs."""
        meta = owner["metadata"]
        now = timestamp(self.clock())
        event = Event(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=meta["namespace"]),
            involvedObject=ObjectReference(
                apiVersion=owner["apiVersion"],
                kind=owner["kind"],
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resourceVersion=meta.get("resourceVersion"),
            ),
            type=type,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=self.field_manager),
            firstTimestamp=now,  # type: ignore[arg-type]  # lightkube accepts the RFC 3339 string
            lastTimestamp=now,  # type: ignore[arg-type]
            count=1,
        )
        try:
            await self.client.create(event)
        except (ApiError, httpx.HTTPError) as e:
            log.warning(
                "cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], e
            )
            return
        self.writes["create Event"] += 1
        log.info("posted event %s on %s/%s", reason, meta["namespace"], meta["name"])


def _not_found(error: RejectedByApi) -> bool:
    cause = error.__cause__
    return isinstance(cause, ApiError) and cause.status.code == 404


class _translated:
    """Turn client failures into :class:`TransientApiError` or :class:`RejectedByApi`."""

    def __init__(self, what: str) -> None:
        self.what = what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        failure = classify(exc) if exc is not None else None
        if failure is None:
            return
        message = f"{self.what}: {failure.detail}"
        if failure.kind == "terminating":
            raise NamespaceTerminating(message) from exc
        if failure.transient:
            raise TransientApiError(message) from exc
        raise RejectedByApi(message) from exc
