"""What a reconcile writes: the children that drifted, the ones no longer rendered, and the
owner's status when it changed — the one write path of every kind the operator reconciles.

A child is applied only when it drifted from what the cache holds (missing, hand-edited, or
rendered differently), first what pods use (identity, config, volume), then the rest, each group
concurrently. A status is patched only in the fields that differ, and what was written is put back
into the cache with the version the API server gave it, so the next reconcile writes nothing.
Temporary failures (API server down, conflicts) ask for a retry; permanent ones (the API server
rejected an object) wait for the next change or resync.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agentkube.operator.cache import Cache
from agentkube.operator.drift import adoption_conflict, drifted
from agentkube.operator.errors import (
    NamespaceTerminating,
    ReconcileError,
    RejectedByApi,
    TransientApiError,
)
from agentkube.operator.naming import model_child_name
from agentkube.operator.status import Check, status_patch

JSON = dict[str, Any]
log = logging.getLogger(__name__)

# Pods of a Deployment cannot be created before their ServiceAccount, ConfigMap and claim.
PREREQUISITES = {"ServiceAccount", "ConfigMap", "PersistentVolumeClaim"}
# The namespace is being deleted: write nothing more, the garbage collector is at work.
TERMINATING = Check(type="Reconciled", ok=False, reason="NamespaceTerminating", message="")


@dataclass(frozen=True, kw_only=True)
class Applied:
    check: Check
    retry: bool


@dataclass(frozen=True, kw_only=True)
class StatusWrite:
    written: bool  # the status changed and the API server took it
    retry: bool


class Writer(Protocol):
    """What a reconcile writes through (:class:`agentkube.operator.applying.Applier` against
    the API server; a recording double in the unit tests)."""

    def clock(self) -> datetime: ...

    async def apply(self, obj: JSON) -> JSON: ...

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...

    async def delete(self, kind: str, namespace: str, name: str) -> None: ...

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: JSON
    ) -> str | None: ...  # the resourceVersion written, when known

    async def post_event(self, owner: JSON, *, type: str, reason: str, message: str) -> None: ...


def applied_ok(children: list[JSON]) -> Applied:
    check = Check(
        type="Reconciled", ok=True, reason="Applied", message=f"{len(children)} objects applied"
    )
    return Applied(check=check, retry=False)


class Writes:
    """The writes of one reconcile, through ``writer``, kept in step with ``cache``."""

    def __init__(self, cache: Cache, writer: Writer) -> None:
        self.cache = cache
        self.writer = writer

    async def apply_all(self, children: list[JSON]) -> Applied:
        """Apply the drifted children: first what pods use, then the rest."""
        first = [c for c in children if c["kind"] in PREREQUISITES]
        rest = [c for c in children if c["kind"] not in PREREQUISITES]
        for group in (first, rest):
            outcomes = await asyncio.gather(*(self._apply_one(c) for c in group))
            failed = next((o for o in outcomes if o is not None), None)
            if failed is not None:
                return failed
        return applied_ok(children)

    async def _apply_one(self, child: JSON) -> Applied | None:
        kind, meta = child["kind"], child["metadata"]
        live = self.cache.get(kind, meta["namespace"], meta["name"])
        if not drifted(live, child):
            return None
        try:
            if live is None:  # not watched: an object without the managed-by label may exist
                live = await self.writer.read(kind, meta["namespace"], meta["name"])
            conflict = adoption_conflict(live, child)
            if conflict is not None:
                # Retried with back-off: a deleted Agent's old children may still be going.
                log.warning("%s", conflict)
                check = Check(
                    type="Reconciled", ok=False, reason="AdoptionRefused", message=conflict
                )
                return Applied(check=check, retry=True)
            self.cache.put(await self.writer.apply(child), kind)
        except NamespaceTerminating:
            return Applied(check=TERMINATING, retry=False)
        except ReconcileError as e:
            log.warning("%s", e)
            check = Check(type="Reconciled", ok=False, reason="ApplyFailed", message=str(e))
            return Applied(check=check, retry=isinstance(e, TransientApiError))
        return None

    async def prune(
        self, owner: JSON, namespace: str, children: list[JSON], child: str | None = None
    ) -> Applied:
        """Delete serving objects a Model (or an MCPServer) no longer renders (it switched to an
        endpoint or a url): a forgotten inference Deployment would hold its GPU for nothing."""
        rendered = {(c["kind"], c["metadata"]["name"]) for c in children}
        for kind, name in stale_children(owner, namespace, rendered, self.cache, child):
            try:
                await self.writer.delete(kind, namespace, name)
            except ReconcileError as e:
                log.warning("%s", e)
                check = Check(type="Reconciled", ok=False, reason="PruneFailed", message=str(e))
                return Applied(check=check, retry=isinstance(e, TransientApiError))
            self.cache.remove(kind, namespace, name)
        return applied_ok(children)

    async def status(self, body: JSON, wanted: JSON) -> StatusWrite:
        """Patch the fields of ``wanted`` that differ from ``body``'s status, and remember what
        was written (with its resourceVersion), so the next reconcile does not write it again."""
        meta = body["metadata"]
        live = body.get("status") or {}
        patch = status_patch(live, wanted)
        if patch is None:
            return StatusWrite(written=False, retry=False)
        try:
            version = await self.writer.patch_status(
                body["kind"], meta["namespace"], meta["name"], patch
            )
        except RejectedByApi as e:
            log.info("%s", e)  # typically deleted meanwhile: its watch event follows
            return StatusWrite(written=False, retry=False)
        except ReconcileError as e:
            log.warning("%s", e)
            return StatusWrite(written=False, retry=isinstance(e, TransientApiError))
        written = {**meta, "resourceVersion": version or meta.get("resourceVersion")}
        self.cache.put({**body, "metadata": written, "status": {**live, **patch}})
        return StatusWrite(written=True, retry=False)


def stale_children(
    owner: JSON,
    namespace: str,
    rendered: set[tuple[str, str]],
    cache: Cache,
    child: str | None = None,
) -> list[tuple[str, str]]:
    """(kind, name) of the owner's serving objects (named ``child``, by default the Model's)
    that exist but are no longer rendered.

    Only objects this very owner controls (owner uid) are candidates, never a look-alike.
    """
    uid = owner["metadata"].get("uid")
    name = child or model_child_name(owner["metadata"]["name"])
    stale = []
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        live = cache.get(kind, namespace, name)
        if live is None or (kind, name) in rendered:
            continue
        owners = live["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == uid and o.get("controller") for o in owners):
            stale.append((kind, name))
    return stale
