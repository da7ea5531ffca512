"""The durable hand-off: an agent's accepted tasks as a queue any replica consumes.

A :class:`TaskQueue` holds, per agent, the tasks waiting and running and the record of each
(status, result), by task id. Two backends behave alike:

* :class:`RedisTaskQueue` — a Redis Stream per agent with one consumer group; the record is a
  JSON string. A replica reads new entries (``XREADGROUP``), keeps the ones it runs alive by
  re-claiming them for itself (``XCLAIM … JUSTID``, which resets their idle time), and takes
  over entries idle longer than ``claim_idle`` — a dead replica's (``XAUTOCLAIM``).
* :class:`LocalTaskQueue` — the same in one process (``asyncio``), records in the embedded
  :class:`~agentkube.memory.state.StateStore`.

Delivery is at-least-once; the result is written exactly once: :meth:`TaskQueue.finish` writes
the final record only if none is there yet (``WATCH`` + ``MULTI``: optimistic, atomic in Redis,
and within what a namespace's ACL user may run — no scripts), acknowledges the entry, and
appends the task id to the agent's ``results`` stream — what a waiting planner reads.
A task delivered more than ``max_deliveries`` times is dead-lettered: its record says
``failed`` with the reason, its entry moves to the agent's ``dead`` stream, and in Redis it is
an incident of the agent (:mod:`agentkube.runtime.incidents`: a ``TaskDeadLettered`` Event).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from redis.exceptions import WatchError

from agentkube.memory.state import StateStore, check_id
from agentkube.memory.team_streams import GROUP, queue_base
from agentkube.runtime.incidents import IncidentStream

TaskStatus = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[TaskStatus, ...] = ("succeeded", "failed")
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_CLAIM_IDLE_S = 660.0  # longer than the default task timeout (600 s) — see docs/teams.md


class TaskState(BaseModel):
    """A task's record, shared by every replica (the ``GET /v1/tasks/{id}`` body)."""

    id: str
    status: TaskStatus
    task: str
    conversation: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    deliveries: int = 0
    replica: str | None = None
    chain: list[str] = []
    """A subtask's delegation chain, its caller last (empty for a root task)."""
    budget: dict[str, float] | None = None
    """A subtask's budget (``TaskBudget`` fields): what its caller had left."""
    trace: dict[str, str] = Field(default_factory=dict)
    """W3C trace context of the submitter (``traceparent``): the run continues its trace."""

    @property
    def done(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One delivery of a task to this replica (``entry`` is the backend's handle)."""

    task_id: str
    entry: str
    deliveries: int


class TaskQueue(Protocol):
    async def submit(self, state: TaskState) -> None:
        """Record ``state`` (queued) and enqueue it."""
        ...

    async def submit_once(self, state: TaskState) -> bool:
        """:meth:`submit` unless a record with ``state.id`` exists; True if it was submitted
        (a restarted planner re-sending a subtask of a deterministic id enqueues nothing)."""
        ...

    async def read(self, task_id: str) -> TaskState | None: ...

    async def take(self, consumer: str, wait_s: float) -> Delivery | None:
        """The next task for ``consumer``: a stale one taken over, else a new one, else None
        after ``wait_s``."""
        ...

    async def keep(self, consumer: str, delivery: Delivery) -> None:
        """Tell the queue ``consumer`` is still working on ``delivery`` (not stale)."""
        ...

    async def begin(self, consumer: str, delivery: Delivery) -> TaskState | None:
        """Mark the task running; None if it must not run (already finished: acknowledged;
        delivered too often: dead-lettered)."""
        ...

    async def finish(self, delivery: Delivery, state: TaskState) -> bool:
        """Write the final ``state`` unless one is written already; acknowledge. True if this
        call wrote it."""
        ...

    async def release(self, delivery: Delivery) -> None:
        """Give an unfinished task back now (a draining replica), for another to run."""
        ...

    async def aclose(self) -> None: ...


def running_state(state: TaskState, deliveries: int, consumer: str) -> TaskState:
    """``state`` as the replica ``consumer`` starts its ``deliveries``-th delivery."""
    update = {
        "status": "running",
        "started_at": time.time(),
        "deliveries": deliveries,
        "replica": consumer,
    }
    return state.model_copy(update=update)


def dead_letter_state(state: TaskState, deliveries: int, limit: int) -> TaskState:
    return state.model_copy(
        update={
            "status": "failed",
            "finished_at": time.time(),
            "error": f"dead-lettered: delivered {deliveries} times (limit {limit}) without a "
            "result; its replicas crashed or timed out — see the agent's logs",
        }
    )


# --------------------------------------------------------------------------- Redis


class RedisTaskQueue:
    """One agent's tasks in Redis Streams (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        agent: str,
        *,
        claim_idle_s: float = DEFAULT_CLAIM_IDLE_S,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        results_kept: int = 100_000,
    ) -> None:
        self._redis = client
        base = queue_base(prefix, agent)
        self._stream, self._results, self._dead = base + "tasks", base + "results", base + "dead"
        self._record = base + "task:"
        self._incidents = IncidentStream(client, prefix, agent)
        self.claim_idle_ms = max(1, int(claim_idle_s * 1000))
        self.max_deliveries = max_deliveries
        self._results_kept = results_kept
        self._group_ready = False
        self._next_claim = 0.0

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def results_stream(self) -> str:
        return self._results

    @property
    def dead_stream(self) -> str:
        return self._dead

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except Exception as e:  # BUSYGROUP: another replica made it first
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def submit(self, state: TaskState) -> None:
        await self._ensure_group()
        key = self._record + check_id("task id", state.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, state.model_dump_json())
            pipe.xadd(self._stream, {"id": state.id})
            await pipe.execute()

    async def submit_once(self, state: TaskState) -> bool:
        await self._ensure_group()
        key = self._record + check_id("task id", state.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    if await pipe.exists(key):
                        await pipe.reset()
                        return False
                    pipe.multi()
                    pipe.set(key, state.model_dump_json())
                    pipe.xadd(self._stream, {"id": state.id})
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # submitted meanwhile: look again

    async def read(self, task_id: str) -> TaskState | None:
        body = await self._redis.get(self._record + check_id("task id", task_id))
        return None if body is None else TaskState.model_validate_json(body)

    async def take(self, consumer: str, wait_s: float) -> Delivery | None:
        await self._ensure_group()
        entries: list[Any] = []
        now = time.monotonic()
        if now >= self._next_claim:  # look for stale entries a few times per claim-idle
            _next, entries, *_ = await self._redis.xautoclaim(
                self._stream, GROUP, consumer, self.claim_idle_ms, start_id="0-0", count=1
            )
            if not entries:
                self._next_claim = now + self.claim_idle_ms / 4000
        if not entries:
            read = await self._redis.xreadgroup(
                GROUP, consumer, {self._stream: ">"}, count=1, block=max(1, int(wait_s * 1000))
            )
            entries = read[0][1] if read else []
        for entry_id, fields in entries:
            if not fields:  # trimmed away meanwhile
                await self._redis.xack(self._stream, GROUP, entry_id)
                continue
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            task_id = fields.get(b"id") or fields.get("id")
            task_id = task_id.decode() if isinstance(task_id, bytes) else str(task_id)
            pending = await self._redis.xpending_range(
                self._stream, GROUP, min=entry, max=entry, count=1
            )
            count = int(pending[0]["times_delivered"]) if pending else 1
            return Delivery(task_id=task_id, entry=entry, deliveries=count)
        return None

    async def keep(self, consumer: str, delivery: Delivery) -> None:
        await self._redis.xclaim(self._stream, GROUP, consumer, 0, [delivery.entry], justid=True)

    async def begin(self, consumer: str, delivery: Delivery) -> TaskState | None:
        state = await self.read(delivery.task_id)
        if state is None or state.done:
            await self._redis.xack(self._stream, GROUP, delivery.entry)
            return None
        if delivery.deliveries > self.max_deliveries:
            dead = dead_letter_state(state, delivery.deliveries - 1, self.max_deliveries)
            if await self.finish(delivery, dead):
                await self._redis.xadd(self._dead, {"id": state.id, "entry": delivery.entry})
                await self._incidents.record("TaskDeadLettered", state.id, dead.error or "")
            return None
        running = running_state(state, delivery.deliveries, consumer)
        await self._redis.set(self._record + state.id, running.model_dump_json())
        return running

    async def finish(self, delivery: Delivery, state: TaskState) -> bool:
        # WATCH/MULTI rather than a script: a namespace's ACL user may not run scripts.
        key = self._record + state.id
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = await pipe.get(key)
                    if current is not None and TaskState.model_validate_json(current).done:
                        await pipe.reset()
                        await self._redis.xack(self._stream, GROUP, delivery.entry)
                        return False
                    pipe.multi()
                    pipe.set(key, state.model_dump_json())
                    pipe.xack(self._stream, GROUP, delivery.entry)
                    pipe.xadd(
                        self._results,
                        {"id": state.id, "status": state.status},
                        maxlen=self._results_kept,
                        approximate=True,
                    )
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # written meanwhile (by another replica): look again

    async def release(self, delivery: Delivery) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream, {"id": delivery.task_id})
            pipe.xack(self._stream, GROUP, delivery.entry)
            await pipe.execute()

    async def aclose(self) -> None:
        """The client belongs to the state store that made it."""


# --------------------------------------------------------------------------- one process


@dataclass
class _Pending:
    task_id: str
    deliveries: int = 0
    consumer: str | None = None
    touched: float = field(default_factory=time.monotonic)


class LocalTaskQueue:
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

    async def submit(self, state: TaskState) -> None:
        await self._store.set(
            self._prefix + check_id("task id", state.id), state.model_dump_json().encode()
        )
        await self._new.put(state.id)

    async def submit_once(self, state: TaskState) -> bool:
        async with self._finishing:
            if await self.read(state.id) is not None:
                return False
            await self.submit(state)
            return True

    async def read(self, task_id: str) -> TaskState | None:
        body = await self._store.get(self._prefix + check_id("task id", task_id))
        return None if body is None else TaskState.model_validate_json(body)

    def _deliver(self, entry: str, consumer: str) -> Delivery:
        pending = self._pending[entry]
        pending.deliveries += 1
        pending.consumer, pending.touched = consumer, time.monotonic()
        return Delivery(task_id=pending.task_id, entry=entry, deliveries=pending.deliveries)

    async def take(self, consumer: str, wait_s: float) -> Delivery | None:
        now = time.monotonic()
        for entry, pending in self._pending.items():
            if now - pending.touched >= self.claim_idle_s:
                return self._deliver(entry, consumer)
        try:
            task_id = await asyncio.wait_for(self._new.get(), timeout=wait_s)
        except TimeoutError:
            return None
        entry = str(next(self._ids))
        self._pending[entry] = _Pending(task_id)
        return self._deliver(entry, consumer)

    async def keep(self, consumer: str, delivery: Delivery) -> None:
        if delivery.entry in self._pending:
            self._pending[delivery.entry].touched = time.monotonic()

    async def begin(self, consumer: str, delivery: Delivery) -> TaskState | None:
        state = await self.read(delivery.task_id)
        if state is None or state.done:
            self._pending.pop(delivery.entry, None)
            return None
        if delivery.deliveries > self.max_deliveries:
            await self.finish(
                delivery, dead_letter_state(state, delivery.deliveries - 1, self.max_deliveries)
            )
            return None
        running = running_state(state, delivery.deliveries, consumer)
        await self._store.set(self._prefix + state.id, running.model_dump_json().encode())
        return running

    async def finish(self, delivery: Delivery, state: TaskState) -> bool:
        self._pending.pop(delivery.entry, None)
        async with self._finishing:  # the check and the write, with no other finish between
            current = await self.read(state.id)
            if current is not None and current.done:
                return False
            await self._store.set(self._prefix + state.id, state.model_dump_json().encode())
        return True

    async def release(self, delivery: Delivery) -> None:
        if self._pending.pop(delivery.entry, None) is not None:
            await self._new.put(delivery.task_id)

    async def aclose(self) -> None:
        """The store belongs to its opener."""
