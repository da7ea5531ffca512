"""Whether KEDA is installed in a namespace's cluster, and which of its objects the operator made.

KEDA's kinds are not watched: a watch on a kind whose CRD is missing fails over and over, and
KEDA is optional. Instead, per namespace and at most once per ``interval_s``, the operator lists
the ScaledObjects and TriggerAuthentications it manages there (its ``managed-by`` label) into
the cache — the drift check then works as for watched children, a deleted one is made again at
the next listing, and one whose Agent lost ``spec.autoscale`` is found even after a restart.
A 404 on the list means KEDA's CRD is not served: the Agent gets ``Autoscaling=False``
(``KEDANotInstalled``) and keeps ``spec.replicas``; installing KEDA is noticed at the next
listing. The rights needed: ``list`` (and the apply layer's get/create/patch/delete) on those
two kinds — no watch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.resource import NamespacedResource

from agentkube.kube_errors import classify
from agentkube.operator.autoscaling import KINDS
from agentkube.operator.cache import Cache
from agentkube.operator.errors import RejectedByApi, TransientApiError
from agentkube.operator.naming import MANAGED_BY, MANAGED_BY_LABEL

JSON = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Listed:
    installed: bool
    at: float


class KedaObjects:
    """KEDA's presence and the operator's KEDA objects, per namespace (see the module doc)."""

    def __init__(
        self,
        client: AsyncClient,
        cache: Cache,
        resources: dict[str, type[NamespacedResource]],
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.cache = cache
        self.resources = resources
        self.interval_s = interval_s
        self._clock = clock
        self._listed: dict[str, _Listed] = {}
        self.lists = 0  # requests made, for the tests

    async def installed(self, namespace: str) -> bool:
        """Whether KEDA's ScaledObject CRD is served (the namespace's objects listed if due)."""
        listed = self._listed.get(namespace)
        now = self._clock()
        if listed is not None and now - listed.at < self.interval_s:
            return listed.installed
        installed = all([await self._list(kind, namespace) for kind in reversed(KINDS)])
        self._listed[namespace] = _Listed(installed=installed, at=now)
        return installed

    async def _list(self, kind: str, namespace: str) -> bool:
        """Cache ``kind``'s managed objects in ``namespace``; False when the kind is not served."""
        selector: dict[str, Any] = {MANAGED_BY_LABEL: MANAGED_BY}
        self.lists += 1
        try:
            found = [
                dict(obj.to_dict())  # type: ignore[attr-defined]
                async for obj in self.client.list(
                    self.resources[kind], namespace=namespace, labels=selector
                )
            ]
        except Exception as e:
            failure = classify(e)
            if isinstance(e, httpx2.HTTPStatusError) and e.response.status_code == 404:
                failure = None  # a plain 404 page, not a Status: the API group is not served
            elif failure is None:
                raise
            if failure is None or failure.kind == "not_found":
                log.info("%s is not served (KEDA is not installed)", kind)
                return False
            error = TransientApiError if failure.transient else RejectedByApi
            raise error(f"list {kind} in {namespace}: {failure.detail}") from e
        names = {obj["metadata"]["name"] for obj in found}
        for (ns, name), _ in self.cache.items(kind):
            if ns == namespace and name not in names:
                self.cache.remove(kind, ns, name)
        for obj in found:
            self.cache.put(obj, kind)
        return True
