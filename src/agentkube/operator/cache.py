"""The operator's view of the cluster, kept from watch events and apply responses.

One map per kind, keyed by (namespace, name). Bodies are trimmed (no ``managedFields``, and no
status for children other than Deployments) to keep the operator's memory small with thousands of
objects. A body older than the cached one (a late watch event after an apply response) is
ignored, so the drift check never compares against the past.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]
Key = tuple[str, str]

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


def _version(body: JSON) -> int | None:
    value = body.get("metadata", {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


class Cache:
    """Latest known bodies of Agents, Models and every child, by kind."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[Key, JSON]] = {}

    def put(self, body: JSON, kind: str | None = None) -> None:
        kind = kind or body["kind"]
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        objects = self._objects.setdefault(kind, {})
        old = objects.get(key)
        if old is not None and old["metadata"].get("uid") == meta.get("uid"):
            new_rv, old_rv = _version(body), _version(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return
        objects[key] = trim({**body, "kind": kind})

    def remove(self, kind: str, namespace: str, name: str) -> None:
        self._objects.get(kind, {}).pop((namespace, name), None)

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self._objects.get(kind, {}).get((namespace, name))

    def keys(self, kind: str) -> Iterator[Key]:
        yield from list(self._objects.get(kind, {}))

    def items(self, kind: str) -> Iterator[tuple[Key, JSON]]:
        yield from list(self._objects.get(kind, {}).items())

    def count(self, kind: str) -> int:
        return len(self._objects.get(kind, {}))
