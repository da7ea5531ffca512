"""The durable hand-off: an agent's accepted tasks as a queue any replica consumes.

A :class:`TaskQueue` holds, per agent, the tasks waiting and running and the record of each
(status, result), by task id. Two backends behave alike:

* :class:`RedisTaskQueue` — a Redis Stream per agent with one consumer group; the record is a
  JSON string. A replica reads new entries (``XREADGROUP``), keeps the ones it runs alive by
  re-claiming them for itself (``XCLAIM … JUSTID``, which resets their idle time), and takes
  over entries idle longer than ``claim_idle`` — a dead replica's (``XAUTOCLAIM``).
* :class:`~agentkube.runtime.local_queue.LocalTaskQueue` — the same in one process
  (``asyncio``), records in the embedded :class:`~agentkube.memory.state.StateStore`.

Each operation has a batch form (``take_many``, ``begin_many``, ``finish_many``, ...): a batch
costs a replica the round trips one task does, so a replica takes up to its free capacity at a
time and commits finishes as a group (:mod:`agentkube.runtime.batching`).

Delivery is at-least-once; the result is written exactly once: :meth:`TaskQueue.finish` writes
the final record only if none is there yet (``WATCH`` + ``MULTI``: optimistic, atomic in Redis,
and within what a namespace's ACL user may run — no scripts), acknowledges the entry, and
appends the task id to the agent's ``results`` stream — what a waiting planner reads.
A task delivered more than ``max_deliveries`` times is dead-lettered: its record says
``failed`` with the reason, its entry moves to the agent's ``dead`` stream, and in Redis it is
an incident of the agent (:mod:`agentkube.runtime.incidents`: a ``TaskDeadLettered`` Event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from redis.exceptions import WatchError

from agentkube.memory.state import check_id
from agentkube.memory.team_streams import GROUP, queue_base
from agentkube.runtime.incidents import IncidentStream

TaskStatus = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[TaskStatus, ...] = ("succeeded", "failed")
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_CLAIM_IDLE_S = 660.0  # longer than the default task timeout (600 s) — see docs/teams.md
SUBMIT_BATCH = 1000  # tasks per MULTI: a bounded transaction, however many are submitted


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
    """One agent's queue. The ``*_many`` forms do for a batch in one round trip what the
    single forms do for one task; the single forms are the batch of one."""

    max_deliveries: int
    """Deliveries of a task before it is dead-lettered instead of run."""

    async def submit(self, state: TaskState) -> None:
        """Record ``state`` (queued) and enqueue it."""
        ...

    async def submit_many(self, states: list[TaskState]) -> None: ...

    async def submit_once(self, state: TaskState) -> bool:
        """:meth:`submit` unless a record with ``state.id`` exists; True if it was submitted
        (a restarted planner re-sending a subtask of a deterministic id enqueues nothing)."""
        ...

    async def read(self, task_id: str) -> TaskState | None: ...

    async def take(self, consumer: str, wait_s: float) -> Delivery | None:
        """The next task for ``consumer``: a stale one taken over, else a new one, else None
        after ``wait_s``."""
        ...

    async def take_many(self, consumer: str, count: int, wait_s: float) -> list[Delivery]:
        """Up to ``count`` tasks (stale ones first); empty after ``wait_s`` with none."""
        ...

    async def keep(self, consumer: str, delivery: Delivery) -> None:
        """Tell the queue ``consumer`` is still working on ``delivery`` (not stale)."""
        ...

    async def keep_many(self, consumer: str, deliveries: list[Delivery]) -> None: ...

    async def begin(self, consumer: str, delivery: Delivery) -> TaskState | None:
        """Mark the task running; None if it must not run (already finished: acknowledged;
        delivered too often: dead-lettered)."""
        ...

    async def begin_many(
        self, consumer: str, deliveries: list[Delivery]
    ) -> list[TaskState | None]: ...

    async def finish(self, delivery: Delivery, state: TaskState) -> bool:
        """Write the final ``state`` unless one is written already; acknowledge. True if this
        call wrote it."""
        ...

    async def finish_many(self, finished: list[tuple[Delivery, TaskState]]) -> list[bool]: ...

    async def release(self, delivery: Delivery) -> None:
        """Give an unfinished task back now (a draining replica), for another to run."""
        ...

    async def aclose(self) -> None: ...


class OneAtATime:
    """The single forms of :class:`TaskQueue` as batches of one."""

    async def submit_many(self, states: list[TaskState]) -> None:
        raise NotImplementedError

    async def take_many(self, consumer: str, count: int, wait_s: float) -> list[Delivery]:
        raise NotImplementedError

    async def keep_many(self, consumer: str, deliveries: list[Delivery]) -> None:
        raise NotImplementedError

    async def begin_many(self, consumer: str, deliveries: list[Delivery]) -> list[TaskState | None]:
        raise NotImplementedError

    async def finish_many(self, finished: list[tuple[Delivery, TaskState]]) -> list[bool]:
        raise NotImplementedError

    async def submit(self, state: TaskState) -> None:
        await self.submit_many([state])

    async def take(self, consumer: str, wait_s: float) -> Delivery | None:
        taken = await self.take_many(consumer, 1, wait_s)
        return taken[0] if taken else None

    async def keep(self, consumer: str, delivery: Delivery) -> None:
        await self.keep_many(consumer, [delivery])

    async def begin(self, consumer: str, delivery: Delivery) -> TaskState | None:
        (state,) = await self.begin_many(consumer, [delivery])
        return state

    async def finish(self, delivery: Delivery, state: TaskState) -> bool:
        (wrote,) = await self.finish_many([(delivery, state)])
        return wrote


class _Status(BaseModel):
    """A record's status alone (parsing the rest of it is not needed to know it is done)."""

    status: TaskStatus


def is_finished(body: bytes | str | None) -> bool:
    return body is not None and _Status.model_validate_json(body).status in FINISHED


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


class RedisTaskQueue(OneAtATime):
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

    def _key(self, task_id: str) -> str:
        return self._record + check_id("task id", task_id)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except Exception as e:  # BUSYGROUP: another replica made it first
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def submit_many(self, states: list[TaskState]) -> None:
        await self._ensure_group()
        for start in range(0, len(states), SUBMIT_BATCH):
            async with self._redis.pipeline(transaction=True) as pipe:
                for state in states[start : start + SUBMIT_BATCH]:
                    pipe.set(self._key(state.id), state.model_dump_json())
                    pipe.xadd(self._stream, {"id": state.id})
                await pipe.execute()

    async def submit_once(self, state: TaskState) -> bool:
        await self._ensure_group()
        key = self._key(state.id)
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
        body = await self._redis.get(self._key(task_id))
        return None if body is None else TaskState.model_validate_json(body)

    async def take_many(self, consumer: str, count: int, wait_s: float) -> list[Delivery]:
        await self._ensure_group()
        claimed: list[Any] = []
        now = time.monotonic()
        if now >= self._next_claim:  # look for stale entries a few times per claim-idle
            _next, claimed, *_ = await self._redis.xautoclaim(
                self._stream, GROUP, consumer, self.claim_idle_ms, start_id="0-0", count=count
            )
            if not claimed:
                self._next_claim = now + self.claim_idle_ms / 4000
        taken = await self._deliveries(claimed, counted=True)
        if len(taken) < count:  # new entries: delivered for the first time
            read = await self._redis.xreadgroup(
                GROUP,
                consumer,
                {self._stream: ">"},
                count=count - len(taken),
                block=None if taken else max(1, int(wait_s * 1000)),
            )
            taken += await self._deliveries(read[0][1] if read else [], counted=False)
        return taken

    async def _deliveries(self, entries: list[Any], *, counted: bool) -> list[Delivery]:
        """Entries as deliveries; ``counted``: look up their delivery counts (taken-over
        entries; a new entry's is 1). Entries trimmed away meanwhile are acknowledged."""
        found: list[tuple[str, str]] = []
        gone = []
        for entry_id, fields in entries:
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            task_id = (fields or {}).get(b"id")
            if task_id is None:
                gone.append(entry)
                continue
            found.append((entry, task_id.decode() if isinstance(task_id, bytes) else task_id))
        if gone:
            await self._redis.xack(self._stream, GROUP, *gone)
        counts = [1] * len(found)
        if counted and found:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry, _ in found:
                    pipe.xpending_range(self._stream, GROUP, min=entry, max=entry, count=1)
                pending = await pipe.execute()
            counts = [int(p[0]["times_delivered"]) if p else 1 for p in pending]
        return [
            Delivery(task_id=task_id, entry=entry, deliveries=n)
            for (entry, task_id), n in zip(found, counts, strict=True)
        ]

    async def keep_many(self, consumer: str, deliveries: list[Delivery]) -> None:
        if deliveries:
            entries = [d.entry for d in deliveries]
            await self._redis.xclaim(self._stream, GROUP, consumer, 0, entries, justid=True)

    async def begin_many(self, consumer: str, deliveries: list[Delivery]) -> list[TaskState | None]:
        if not deliveries:
            return []
        keys = [self._key(d.task_id) for d in deliveries]
        # WATCH/MULTI: a record finished meanwhile (by a replica this task was taken from)
        # is never set back to running.
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*keys)
                    plan = _BeginPlan(self, consumer, deliveries, keys, await pipe.mget(keys))
                    if not plan.writes and not plan.done:
                        await pipe.reset()
                        break
                    pipe.multi()
                    if plan.writes:
                        pipe.mset(plan.writes)
                    if plan.done:
                        pipe.xack(self._stream, GROUP, *plan.done)
                    await pipe.execute()
                    break
                except WatchError:
                    continue  # one of them changed meanwhile: look again
        for delivery, state in plan.dead:
            await self._dead_letter(delivery, state)
        return plan.began

    async def _dead_letter(self, delivery: Delivery, state: TaskState) -> None:
        dead = dead_letter_state(state, delivery.deliveries - 1, self.max_deliveries)
        if await self.finish(delivery, dead):
            await self._redis.xadd(self._dead, {"id": state.id, "entry": delivery.entry})
            await self._incidents.record("TaskDeadLettered", state.id, dead.error or "")

    async def finish_many(self, finished: list[tuple[Delivery, TaskState]]) -> list[bool]:
        if not finished:
            return []
        keys = list(dict.fromkeys(self._key(state.id) for _, state in finished))
        # WATCH/MULTI rather than a script: a namespace's ACL user may not run scripts.
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*keys)
                    bodies = dict(zip(keys, await pipe.mget(keys), strict=True))
                    wrote: list[bool] = []
                    written: set[str] = set()  # a task twice in the batch: the first counts
                    pipe.multi()
                    for _, state in finished:
                        key = self._key(state.id)
                        if key in written or is_finished(bodies[key]):
                            wrote.append(False)
                            continue
                        written.add(key)
                        wrote.append(True)
                        pipe.set(key, state.model_dump_json())
                        pipe.xadd(
                            self._results,
                            {"id": state.id, "status": state.status},
                            maxlen=self._results_kept,
                            approximate=True,
                        )
                    pipe.xack(self._stream, GROUP, *[d.entry for d, _ in finished])
                    await pipe.execute()
                    return wrote
                except WatchError:
                    continue  # written meanwhile (by another replica): look again

    async def release(self, delivery: Delivery) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream, {"id": delivery.task_id})
            pipe.xack(self._stream, GROUP, delivery.entry)
            await pipe.execute()

    async def aclose(self) -> None:
        """The client belongs to the state store that made it."""


class _BeginPlan:
    """What beginning ``deliveries`` writes, given their records' ``bodies``: each one runs
    (``writes``), is acknowledged (finished already, or twice in the batch: ``done``), or is
    dead-lettered (``dead``); ``began`` is the caller's answer, in order."""

    def __init__(
        self,
        queue: RedisTaskQueue,
        consumer: str,
        deliveries: list[Delivery],
        keys: list[str],
        bodies: list[bytes | None],
    ) -> None:
        self.began: list[TaskState | None] = []
        self.writes: dict[str, str] = {}
        self.done: list[str] = []
        self.dead: list[tuple[Delivery, TaskState]] = []
        for delivery, key, body in zip(deliveries, keys, bodies, strict=True):
            state = None if body is None else TaskState.model_validate_json(body)
            running = None
            if state is None or state.done or key in self.writes:
                self.done.append(delivery.entry)
            elif delivery.deliveries > queue.max_deliveries:
                self.dead.append((delivery, state))
            else:
                running = running_state(state, delivery.deliveries, consumer)
                self.writes[key] = running.model_dump_json()
            self.began.append(running)
