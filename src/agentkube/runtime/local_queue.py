"""The task queue in one process: :class:`LocalTaskQueue`, records in the embedded state store.

The same semantics as :class:`~agentkube.runtime.task_queue.RedisTaskQueue` (at-least-once
delivery, one result per task, take-over after ``claim_idle``, dead letters) for
``agentkube agent serve`` without Redis: its replicas are the worker loops of one process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from agentkube.memory.state import StateStore, check_id
from agentkube.runtime.task_queue import (
    DEFAULT_CLAIM_IDLE_S,
    DEFAULT_MAX_DELIVERIES,
    Delivery,
    OneAtATime,
    TaskState,
    dead_letter_state,
    running_state,
)


@dataclass
class _Pending:
    task_id: str
    deliveries: int = 0
    consumer: str | None = None
    touched: float = field(default_factory=time.monotonic)


class LocalTaskQueue(OneAtATime):
    """The same semantics in one process; records in the embedded state store."""

    def __init__(
        self,
        store: StateStore,
        agent: str,
        *,
        claim_idle_s: float = DEFAULT_CLAIM_IDLE_S,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    ) -> None:
        self._store = store
        self._prefix = f"teams.{check_id('agent', agent)}.task."
        self.claim_idle_s = claim_idle_s
        self.max_deliveries = max_deliveries
        self._new: asyncio.Queue[str] = asyncio.Queue()
        self._pending: dict[str, _Pending] = {}
        self._finishing = asyncio.Lock()
        self._ids = iter(range(1, 2**62))

    def _key(self, task_id: str) -> str:
        return self._prefix + check_id("task id", task_id)

    async def submit_many(self, states: list[TaskState]) -> None:
        for state in states:
            await self._store.set(self._key(state.id), state.model_dump_json().encode())
            await self._new.put(state.id)

    async def submit_once(self, state: TaskState) -> bool:
        async with self._finishing:
            if await self.read(state.id) is not None:
                return False
            await self.submit(state)
            return True

    async def read(self, task_id: str) -> TaskState | None:
        body = await self._store.get(self._key(task_id))
        return None if body is None else TaskState.model_validate_json(body)

    def _deliver(self, entry: str, consumer: str) -> Delivery:
        pending = self._pending[entry]
        pending.deliveries += 1
        pending.consumer, pending.touched = consumer, time.monotonic()
        return Delivery(task_id=pending.task_id, entry=entry, deliveries=pending.deliveries)

    def _new_delivery(self, task_id: str, consumer: str) -> Delivery:
        entry = str(next(self._ids))
        self._pending[entry] = _Pending(task_id)
        return self._deliver(entry, consumer)

    async def take_many(self, consumer: str, count: int, wait_s: float) -> list[Delivery]:
        now = time.monotonic()
        stale = [e for e, p in self._pending.items() if now - p.touched >= self.claim_idle_s]
        taken = [self._deliver(entry, consumer) for entry in stale[:count]]
        while len(taken) < count and not self._new.empty():
            taken.append(self._new_delivery(self._new.get_nowait(), consumer))
        if taken:
            return taken
        try:
            task_id = await asyncio.wait_for(self._new.get(), timeout=wait_s)
        except TimeoutError:
            return []
        return [self._new_delivery(task_id, consumer)]

    async def keep_many(self, consumer: str, deliveries: list[Delivery]) -> None:
        now = time.monotonic()
        for delivery in deliveries:
            if delivery.entry in self._pending:
                self._pending[delivery.entry].touched = now

    async def begin_many(self, consumer: str, deliveries: list[Delivery]) -> list[TaskState | None]:
        began: list[TaskState | None] = []
        dead = []
        async with self._finishing:  # never sets a record finished meanwhile back to running
            for delivery in deliveries:
                state = await self.read(delivery.task_id)
                if state is None or state.done:
                    self._pending.pop(delivery.entry, None)
                    began.append(None)
                elif delivery.deliveries > self.max_deliveries:
                    limit = self.max_deliveries
                    dead.append(
                        (delivery, dead_letter_state(state, delivery.deliveries - 1, limit))
                    )
                    began.append(None)
                else:
                    running = running_state(state, delivery.deliveries, consumer)
                    body = running.model_dump_json().encode()
                    await self._store.set(self._key(state.id), body)
                    began.append(running)
        await self.finish_many(dead)
        return began

    async def finish_many(self, finished: list[tuple[Delivery, TaskState]]) -> list[bool]:
        wrote = []
        async with self._finishing:  # the check and the write, with no other finish between
            for delivery, state in finished:
                self._pending.pop(delivery.entry, None)
                current = await self.read(state.id)
                if current is not None and current.done:
                    wrote.append(False)
                    continue
                await self._store.set(self._key(state.id), state.model_dump_json().encode())
                wrote.append(True)
        return wrote

    async def release(self, delivery: Delivery) -> None:
        if self._pending.pop(delivery.entry, None) is not None:
            await self._new.put(delivery.task_id)

    async def aclose(self) -> None:
        """The store belongs to its opener."""
