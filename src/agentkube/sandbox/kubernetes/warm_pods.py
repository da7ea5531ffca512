"""The warm pool: pre-created, single-use sandbox pods waiting for one request each.

A warm pod runs the pod runner, which waits for its request file: a downward-API volume of the
pod's ``agentkube.openvn/sandbox-request`` annotation, empty until the gateway claims the pod by
writing that annotation (one merge patch, which also relabels the pod ``claimed`` and sets its
``activeDeadlineSeconds`` to the request's timeout from now). The pod still has no API access and
no network: the request arrives only through its own metadata, as the kubelet refreshes it.

After serving one request the pod exits and is deleted; the pool creates a replacement at once.
Only requests whose CPU, memory and scratch limits equal the pool's fit a warm pod (a pod's
resources are fixed when it is made); any other request takes the cold Job path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx2  # lightkube's HTTP client (a fork of httpx): its errors are not httpx's
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from agentkube.api.pod_contract import GATEWAY_FIELD_MANAGER
from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.kubernetes.pod_events import PodEvents
from agentkube.sandbox.kubernetes.rendering import (
    JSON,
    REQUEST_ANNOTATION,
    WARM_LABEL,
    PodSettings,
    payload,
    render_warm_pod,
)

log = logging.getLogger(__name__)
CLAIM_GRACE_S = 10


def fits(limits: Limits, pool: Limits) -> bool:
    """Whether a request with ``limits`` may run in a pod made for ``pool``."""
    return (limits.cpu, limits.memory_bytes, limits.scratch_bytes) == (
        pool.cpu,
        pool.memory_bytes,
        pool.scratch_bytes,
    )


def _started_at(pod: JSON) -> datetime | None:
    value = (pod.get("status") or {}).get("startTime")
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


class WarmPodPool:
    def __init__(
        self,
        client: AsyncClient,
        events: PodEvents,
        settings: PodSettings,
        size: int,
        limits: Limits,
    ) -> None:
        self.size = size
        self.limits = limits
        self._client = client
        self.settings = settings
        self._ready: dict[str, datetime] = {}  # Running, unclaimed -> its start time
        self._pending: set[str] = set()  # created, not Running yet
        self._claimed: set[str] = set()  # never ready again, whatever late events say
        self._changed = asyncio.Event()
        self._refill: asyncio.Task[None] | None = None
        self.claims = 0
        self.misses = 0
        events.subscribe(self._observe)
        self._events = events

    @property
    def ready(self) -> int:
        return len(self._ready)

    async def start(self, timeout_s: float = 120.0) -> None:
        """Create the pool and wait until every pod is Running."""
        if self._refill is None:
            self._refill = asyncio.create_task(self._keep_full(), name="sandbox-warm-pool")
        deadline = time.monotonic() + timeout_s
        while len(self._ready) < self.size and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        if len(self._ready) < self.size:
            log.warning("warm pool: %d of %d pods ready", len(self._ready), self.size)

    async def claim(self, request: ExecutionRequest) -> str | None:
        """Hand ``request`` to a ready pod; its name, or None (take the cold path)."""
        if not fits(request.limits, self.limits):
            return None
        while self._ready:
            name, started = self._ready.popitem()
            self._claimed.add(name)
            self._changed.set()
            self._events.expect(name)
            age = (datetime.now(UTC) - started).total_seconds()
            body = {
                "metadata": {
                    "labels": {WARM_LABEL: "claimed"},
                    "annotations": {REQUEST_ANNOTATION: payload(request)},
                },
                "spec": {
                    "activeDeadlineSeconds": max(1, math.ceil(age))
                    + math.ceil(request.limits.timeout_s)
                    + CLAIM_GRACE_S
                },
            }
            try:
                await self._client.patch(
                    Pod,
                    name,
                    body,
                    namespace=self.settings.namespace,
                    patch_type=PatchType.MERGE,
                    field_manager=GATEWAY_FIELD_MANAGER,
                )
            except (ApiError, httpx2.HTTPError) as e:
                self._events.forget(name)
                log.warning("warm pod %s could not be claimed (%s); trying another", name, e)
                continue
            self.claims += 1
            return name
        self.misses += 1
        return None

    def _observe(self, pod: JSON, deleted: bool) -> None:
        meta = pod.get("metadata") or {}
        name = meta.get("name", "")
        if deleted:
            self._claimed.discard(name)
        if (meta.get("labels") or {}).get(WARM_LABEL) != "ready" or name in self._claimed:
            return
        if deleted or meta.get("deletionTimestamp") or self._ended(pod):
            self._ready.pop(name, None)
            self._pending.discard(name)
        elif (pod.get("status") or {}).get("phase") == "Running":
            started = _started_at(pod) or datetime.now(UTC)
            if name in self._pending or name not in self._ready:
                self._pending.discard(name)
                self._ready[name] = started
        else:
            return
        self._changed.set()

    @staticmethod
    def _ended(pod: JSON) -> bool:
        return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    async def _keep_full(self) -> None:
        while True:
            missing = self.size - len(self._ready) - len(self._pending)
            if missing > 0:
                await asyncio.gather(*(self._create() for _ in range(missing)))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 5.0)

    async def _create(self) -> None:
        name = f"sbx-warm-{secrets.token_hex(5)}"
        self._pending.add(name)
        pod: Any = Pod.from_dict(render_warm_pod(name, self.limits, self.settings))
        try:
            await self._client.create(pod, field_manager=GATEWAY_FIELD_MANAGER)
        except (ApiError, httpx2.HTTPError) as e:
            self._pending.discard(name)
            log.error("warm pool: cannot create sandbox pod %s: %s", name, e)
            await asyncio.sleep(2.0)

    async def aclose(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
            self._refill = None
        self._ready.clear()
        self._pending.clear()
        self._claimed.clear()
