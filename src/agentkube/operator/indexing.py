"""The operator's view of the cluster: kopf indexes, plus what the operator wrote itself.

Every watched kind has a ``@kopf.index`` keyed by (namespace, name) holding the trimmed body (no
``managedFields``, no status for children other than Deployments, to keep memory small with
thousands of objects); kopf keeps it from its watches and fills it before any handler runs.

What a reconcile writes (an apply's response, a status it patched, a child it deleted) is kept
on top of the index until the watch brings that very ``resourceVersion`` (compared for equality
only: it is opaque). Watch events of one object come in order, so any other version seen before
it is older — kopf's own finalizer patch of a new Agent typically is. Should the watch skip it
(a re-list after a broken watch), the index wins after :data:`STALE_SECONDS` all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

JSON = dict[str, Any]
Key = tuple[str, str]

STALE_SECONDS = 30.0  # a watch delivers within a second; after this the index wins anyway
_KEEP_STATUS = {"Deployment", "Agent", "Model", "MCPServer"}
_DROPPED_META = {"managedFields", "creationTimestamp", "selfLink"}
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What the status checks read of a Deployment; its conditions and messages are not kept.
_DEPLOYMENT_STATUS = {"observedGeneration", "replicas", "updatedReplicas", "availableReplicas"}


def trim(body: Mapping[str, Any]) -> JSON:
    kind = body.get("kind", "")
    meta = {k: v for k, v in body.get("metadata", {}).items() if k not in _DROPPED_META}
    if _LAST_APPLIED in meta.get("annotations", {}):  # a second copy of the whole object
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != _LAST_APPLIED}
    kept = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    status = body.get("status")
    if status and kind == "Deployment":
        kept["status"] = {k: v for k, v in status.items() if k in _DEPLOYMENT_STATUS}
    elif status and kind in _KEEP_STATUS:
        kept["status"] = dict(status)
    return {**kept, "metadata": meta}


def index_name(plural: str) -> str:
    """The kwarg under which kopf hands the index of ``plural`` to handlers."""
    return f"{plural}_index"


def _version(body: JSON | None) -> str | None:
    return None if body is None else body["metadata"].get("resourceVersion")


class Objects(Protocol):
    """What a reconcile reads and remembers (:class:`IndexedCache`)."""

    def get(self, kind: str, namespace: str, name: str) -> JSON | None: ...

    def put(self, body: JSON, kind: str | None = None) -> None: ...

    def remove(self, kind: str, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class _Written:
    body: JSON | None  # None: deleted
    at: float


class IndexedCache:
    """Latest known bodies by kind: kopf's indexes, overlaid with the operator's own writes."""

    def __init__(
        self,
        plurals: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._plurals = dict(plurals or {})  # kind -> plural; none: only what was put
        self._clock = clock
        self._indices: Mapping[str, kopf.Index[Key, JSON]] = {}
        self._written: dict[str, dict[Key, _Written]] = {}

    def attach(self, indices: Mapping[str, Any]) -> None:
        """Take the indexes from a handler's kwargs (kopf hands them only to handlers; they are
        the same objects for the operator's whole life)."""
        if not self._indices:
            self._indices = {
                kind: indices[index_name(plural)] for kind, plural in self._plurals.items()
            }

    def _indexed(self, kind: str, key: Key) -> JSON | None:
        index = self._indices.get(kind)
        store = index.get(key) if index is not None else None
        return next(iter(store), None) if store else None

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        key = (namespace, name)
        live = self._indexed(kind, key)
        written = self._written.get(kind, {}).get(key)
        if written is None:
            return live
        if kind not in self._indices:
            return written.body  # nothing indexed: what was put is all there is
        if written.body is None:
            caught_up = live is None
        else:
            caught_up = _version(live) == _version(written.body)
        if caught_up or self._clock() - written.at > STALE_SECONDS:
            del self._written[kind][key]
            return live
        return written.body

    def put(self, body: JSON, kind: str | None = None) -> None:
        kind = kind or body["kind"]
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        written = _Written(trim({**body, "kind": kind}), self._clock())
        self._written.setdefault(kind, {})[key] = written

    def remove(self, kind: str, namespace: str, name: str) -> None:
        self._written.setdefault(kind, {})[(namespace, name)] = _Written(None, self._clock())

    def count(self, kind: str) -> int:
        index = self._indices.get(kind)
        return len(index) if index is not None else 0
