"""One watch on the gateway's sandbox pods, fanned out to the executions waiting on them.

A single watch (label ``agentkube.openvn/sandbox-gateway=<gateway>``) serves every execution, so
the API server sees one long request instead of one per execution. Waiters register before they
create their Job or claim their pod; each receives the pod every time it changes, and the pod with
``deleted`` set when it is gone. The watch restarts after errors, including an API server that
went away (:func:`watch_pods`); waiters also poll now and then
(:mod:`agentkube.sandbox.kubernetes`), so a missed event costs latency, never a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import on_error_retry

from agentkube.sandbox.kubernetes.rendering import EXECUTION_LABEL, GATEWAY_LABEL, JSON

log = logging.getLogger(__name__)
Listener = Callable[[JSON, bool], None]

RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0


async def watch_pods(
    client: AsyncClient,
    *,
    namespace: str,
    labels: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> AsyncGenerator[tuple[str, JSON]]:
    """``(event type, pod)`` for ever, across API server restarts.

    lightkube's ``on_error_retry`` retries a watch whose stream breaks, but the reconnect itself
    sits outside its retry: while the API server is down, a refused connection ends the watch.
    Here the watch starts again, with backoff, listing the current pods first (so a consumer sees
    every pod again as ``ADDED``/``MODIFIED``; deletions during the outage are not replayed).
    """
    delay = RECONNECT_FIRST_S
    while True:
        events: Any = client.watch(
            Pod, namespace=namespace, labels=labels, fields=fields, on_error=on_error_retry
        )
        try:
            # aclosing: on cancellation the watch's HTTP stream closes now, on this loop, instead
            # of whenever the generator is collected (possibly after the loop is gone).
            async with contextlib.aclosing(events):
                async for kind, pod in events:
                    delay = RECONNECT_FIRST_S
                    yield kind, pod.to_dict()
        except httpx2.TransportError as e:
            log.warning("pod watch lost the API server (%s); reconnecting in %.1f s", e, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)


class PodEvents:
    def __init__(self, client: AsyncClient, *, namespace: str, gateway: str) -> None:
        self._client = client
        self._namespace = namespace
        self._gateway = gateway
        self._waiters: dict[str, asyncio.Queue[tuple[JSON, bool]]] = {}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(pod, deleted)`` for every event (the warm pool keeps count this way)."""
        self._listeners.append(listener)

    def expect(self, execution: str) -> asyncio.Queue[tuple[JSON, bool]]:
        """``execution``'s queue of pod events (made on first call, before the pod exists)."""
        queue = self._waiters.get(execution)
        if queue is None:
            queue = self._waiters[execution] = asyncio.Queue()
        return queue

    def forget(self, execution: str) -> None:
        self._waiters.pop(execution, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="sandbox-pod-watch")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        events = watch_pods(
            self._client, namespace=self._namespace, labels={GATEWAY_LABEL: self._gateway}
        )
        async with contextlib.aclosing(events):
            async for kind, pod in events:
                self.started.set()
                self.dispatch(pod, deleted=kind == "DELETED")

    def dispatch(self, pod: JSON, *, deleted: bool) -> None:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        queue = self._waiters.get(labels.get(EXECUTION_LABEL, ""))
        if queue is not None:
            queue.put_nowait((pod, deleted))
        for listener in self._listeners:
            try:
                listener(pod, deleted)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("pod event listener failed")
