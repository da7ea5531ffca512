"""Subtasks through the target's durable queue, so a restarted planner picks their results up.

With Redis, a planner hands a subtask for an agent of its namespace not over A2A but straight
into that agent's queue (:class:`~agentkube.runtime.task_queue.RedisTaskQueue`), as a task whose
id is derived from the planner's own task id and the call (its ordinal in the run, the target,
the subtask's text): :func:`subtask_id`. The planner then waits on the task's record.

If the planner's replica dies while waiting, its own task is redelivered (after ``claimIdle``)
and run again; the same calls derive the same ids, and ``submit_once`` enqueues nothing for an
id that already has a record — the rerun waits on (or at once reads) the executor's result
instead of sending the work twice. The executors' replicas consume the queue, so the
subtask itself survives them too, and KEDA scales them on it (docs/teams.md).

A subtask without a durable parent (a run no one will redo), or for an agent of another
namespace, goes through the ``fallback`` delegator (A2A).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path

from agentkube.runtime.agent import RunOutcome
from agentkube.runtime.delegation import Delegator, Subtask
from agentkube.runtime.errors import DelegationFailed
from agentkube.runtime.events import EventSink
from agentkube.runtime.task_queue import RedisTaskQueue, TaskQueue, TaskState
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import inject

log = logging.getLogger(__name__)

POLL_S = 0.2
MARGIN_S = 30.0  # past the subtask's own budget: the executor may be slow to report


def subtask_id(subtask: Subtask) -> str:
    """The same for the same call of the same parent task, and only for it."""
    text = "\0".join((subtask.parent or "", subtask.target, str(subtask.call), subtask.task))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class QueuedTeam:
    """A :class:`~agentkube.runtime.delegation.Delegator` over the targets' task queues."""

    def __init__(
        self,
        fallback: Delegator,
        queue_of: Callable[[str], TaskQueue],
        *,
        targets: set[str],
        poll_s: float = POLL_S,
    ) -> None:
        self._fallback = fallback
        self._queue_of = queue_of
        self._targets = targets  # same-namespace agents whose queue is reachable
        self._poll_s = poll_s

    @property
    def max_depth(self) -> int:
        return self._fallback.max_depth

    def describe(self, target: str) -> str:
        return self._fallback.describe(target)

    async def delegate(self, subtask: Subtask, emit: EventSink) -> RunOutcome:
        if subtask.parent is None or subtask.target not in self._targets:
            return await self._fallback.delegate(subtask, emit)
        queue = self._queue_of(subtask.target)
        task_id = subtask_id(subtask)
        # A producer span, its context in the record: the target's run continues this trace.
        with spans.span(
            f"queue.publish {subtask.target}",
            kind=spans.SpanKind.PRODUCER,
            attributes={
                spans.MESSAGING_SYSTEM: "redis",
                spans.MESSAGING_DESTINATION: subtask.target,
                spans.MESSAGING_MESSAGE_ID: task_id,
            },
        ):
            state = TaskState(
                id=task_id,
                status="queued",
                task=subtask.task,
                conversation=task_id,
                created_at=time.time(),
                chain=list(subtask.chain),
                budget={
                    "max_model_requests": subtask.budget.max_model_requests,
                    "timeout_s": subtask.budget.timeout_s,
                },
                trace=inject(),
            )
            submitted = await queue.submit_once(state)
        if submitted:
            log.info("subtask %s queued for %s", task_id, subtask.target)
        else:
            log.info("subtask %s for %s was sent before: waiting for it", task_id, subtask.target)
        return await self._result(queue, task_id, subtask)

    async def _result(self, queue: TaskQueue, task_id: str, subtask: Subtask) -> RunOutcome:
        deadline = time.monotonic() + subtask.budget.timeout_s + MARGIN_S
        while time.monotonic() < deadline:
            found = await queue.read(task_id)
            if found is not None and found.done:
                if found.status != "succeeded" or found.result is None:
                    raise DelegationFailed(
                        f"agent {subtask.target!r}: {found.error or 'the subtask failed'}"
                    )
                return RunOutcome.model_validate(found.result)
            await asyncio.sleep(self._poll_s)
        raise DelegationFailed(f"agent {subtask.target!r}: subtask {task_id} did not finish")


@asynccontextmanager
async def open_queued_team(
    fallback: Delegator,
    *,
    redis_url: str | None,
    data_dir: Path | None,
    targets: Collection[str],
) -> AsyncIterator[Delegator]:
    """A :class:`QueuedTeam` on the agents' Redis (``redis_url`` or ``AGENTKUBE_REDIS_URL``)
    for the same-namespace ``targets``; without Redis, ``fallback`` alone."""
    from agentkube.memory.settings import MemorySettings, open_state_store
    from agentkube.memory.state.redis import RedisState
    from agentkube.memory.tenancy import key_prefix

    store = open_state_store(MemorySettings.from_env(data_dir=data_dir, redis_url=redis_url))
    try:
        if not isinstance(store, RedisState):
            yield fallback
            return
        client, prefix = store.client, key_prefix(store.namespace)
        queues: dict[str, TaskQueue] = {}

        def queue_of(target: str) -> TaskQueue:
            return queues.setdefault(target, RedisTaskQueue(client, prefix, target))

        yield QueuedTeam(fallback, queue_of, targets={t for t in targets if "." not in t})
    finally:
        await store.aclose()
