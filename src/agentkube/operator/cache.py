"""The operator's view of the cluster: what its watches saw, plus what it wrote itself.

One map per kind, keyed by (namespace, name), fed by the watch events (:meth:`Cache.observe`,
:meth:`Cache.forget`; events of one object come in order, so the latest always wins). Bodies are
trimmed (no ``managedFields``, no status for children other than Deployments) to keep the
operator's memory small with thousands of objects.

What a reconcile writes (an apply's response, a status it patched, a child it deleted:
:meth:`Cache.put`, :meth:`Cache.remove`) is kept on top until the watch brings that very
``resourceVersion`` (compared for equality only: it is opaque) — any other version seen before it
is older. Should the watch skip it (a re-list after a broken watch), what was observed wins after
:data:`STALE_SECONDS` all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
Key = tuple[str, str]

STALE_SECONDS = 30.0  # a watch delivers within a second; after this what was observed wins
_KEEP_STATUS = {"Deployment", "Agent", "Model", "MCPServer", "KnowledgeBase", "Job"}


_DROPPED_META = {"managedFields", "creationTimestamp", "selfLink"}
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What the status checks read of a Deployment; its conditions and messages are not kept.
_DEPLOYMENT_STATUS = {"observedGeneration", "replicas", "updatedReplicas", "availableReplicas"}


def trim(body: JSON) -> JSON:
    kind = body.get("kind", "")
    meta = {k: v for k, v in body.get("metadata", {}).items() if k not in _DROPPED_META}
    if _LAST_APPLIED in meta.get("annotations", {}):  # a second copy of the whole object
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != _LAST_APPLIED}
    kept = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    status = body.get("status")
    if status and kind == "Deployment":
        kept["status"] = {k: v for k, v in status.items() if k in _DEPLOYMENT_STATUS}
    elif status and kind in _KEEP_STATUS:
        kept["status"] = status
    return {**kept, "metadata": meta}


def _version(body: JSON | None) -> str | None:
    return None if body is None else body["metadata"].get("resourceVersion")


def _key(body: JSON) -> Key:
    meta = body["metadata"]
    return (meta.get("namespace") or "", meta["name"])


@dataclass(frozen=True)
class _Written:
    body: JSON | None  # None: deleted
    at: float


class Cache:
    """Latest known bodies of Agents, Models, MCPServers and every child, by kind."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._observed: dict[str, dict[Key, JSON]] = {}
        self._written: dict[str, dict[Key, _Written]] = {}

    # ------------------------------------------------------------------ the watches

    def observe(self, body: JSON, kind: str) -> None:
        key = _key(body)
        self._observed.setdefault(kind, {})[key] = trim({**body, "kind": kind})
        written = self._written.get(kind, {}).get(key)
        caught_up = written is not None and written.body is not None
        if caught_up and _version(written.body) == _version(body):  # type: ignore[union-attr]
            del self._written[kind][key]  # the watch caught up with the write

    def forget(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """The watch saw the object (of ``uid``, when known) deleted."""
        self._observed.get(kind, {}).pop((namespace, name), None)
        written = self._written.get(kind, {}).get((namespace, name))
        if written is None:
            return
        if written.body is None:  # the deletion the operator made
            del self._written[kind][(namespace, name)]
        elif uid is not None and written.body["metadata"].get("uid") == uid:
            # What the operator wrote of that very object (a status, say) is gone with it; a
            # body of another uid is one it made again since, and stays.
            del self._written[kind][(namespace, name)]

    # ------------------------------------------------------------------ the reconciles

    def put(self, body: JSON, kind: str | None = None) -> None:
        kind = kind or body["kind"]
        written = _Written(trim({**body, "kind": kind}), self._clock())
        self._written.setdefault(kind, {})[_key(body)] = written

    def remove(self, kind: str, namespace: str, name: str) -> None:
        self._written.setdefault(kind, {})[(namespace, name)] = _Written(None, self._clock())

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        key = (namespace, name)
        live = self._observed.get(kind, {}).get(key)
        written = self._written.get(kind, {}).get(key)
        if written is None:
            return live
        if written.body is None:
            caught_up = live is None
        else:
            caught_up = live is not None and _version(live) == _version(written.body)
        if caught_up or self._clock() - written.at > STALE_SECONDS:
            del self._written[kind][key]
            return live
        return written.body

    def keys(self, kind: str) -> Iterator[Key]:
        yield from list(self._observed.get(kind, {}))

    def items(self, kind: str) -> Iterator[tuple[Key, JSON]]:
        for key in list(self._observed.get(kind, {})):
            body = self.get(kind, *key)
            if body is not None:
                yield key, body

    def count(self, kind: str) -> int:
        return len(self._observed.get(kind, {}))
