"""Replicas consuming one agent's :class:`~agentkube.runtime.task_queue.TaskQueue`.

:class:`DurableTasks` is what ``agentkube agent serve --redis URL`` runs behind ``/v1/tasks``:
``submit`` records and enqueues a task, ``read`` answers for any task of the agent (whichever
replica ran it), and one take loop takes up to ``concurrency`` tasks at a time, runs each on
the agent's runtime and writes its one result (results finished together are committed
together: :class:`~agentkube.runtime.batching.GroupCommit`, as are submits). While tasks run,
their deliveries are kept alive every ``claim_idle / 3`` seconds, so only a replica that stopped
(crashed, frozen) loses its tasks to the others.

``drain`` (SIGTERM) stops taking tasks, lets the running ones finish for up to ``drain_s``
seconds, then gives the rest back to the queue for another replica.

Each task carries its submitter's trace context in its record: submitting is a
``queue.publish`` producer span, running it a ``queue.process`` consumer span in the same trace
(whichever replica takes it). :class:`QueueMetrics` count waits, redeliveries and dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from agentkube.errors import AgentkubeError
from agentkube.runtime.agent import AgentRuntime, TaskBudget
from agentkube.runtime.batching import GroupCommit
from agentkube.runtime.local_queue import LocalTaskQueue
from agentkube.runtime.task_queue import (
    DEFAULT_CLAIM_IDLE_S,
    DEFAULT_MAX_DELIVERIES,
    Delivery,
    RedisTaskQueue,
    TaskQueue,
    TaskState,
)
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import continued, inject

log = logging.getLogger(__name__)

TAKE_WAIT_S = 1.0


def replica_name() -> str:
    """This process's consumer name: host, pid and a random suffix (a restart is a new one)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class QueueMetrics:
    """The queue as this replica sees it (served with the agent's metrics)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.wait = Histogram(
            "agentkube_queue_wait_seconds",
            "Time from a task's submission to a replica starting it (queue lag)",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.redeliveries = Counter(
            "agentkube_queue_redeliveries",
            "Deliveries of a task after its first (a replica died or gave it back)",
            registry=r,
        )
        self.dead_letters = Counter(
            "agentkube_queue_dead_letters",
            "Tasks delivered more than max-deliveries times, moved to the dead stream",
            registry=r,
        )


class DurableTasks:
    def __init__(
        self,
        runtime: AgentRuntime,
        queue: TaskQueue,
        *,
        concurrency: int = 4,
        claim_idle_s: float,
        drain_s: float = 30.0,
        consumer: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.queue = queue
        self.consumer = consumer or replica_name()
        self._concurrency = concurrency
        self._keep_every = max(0.05, claim_idle_s / 3)
        self._drain_s = drain_s
        self._taking = True
        self._stopped = asyncio.Event()
        self._room = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._running: dict[str, tuple[Delivery, asyncio.Task[None]]] = {}
        self._submits = GroupCommit(self._submit_many)
        self._finishes = GroupCommit(queue.finish_many)
        self.metrics = QueueMetrics()
        self.observers: list[Callable[[TaskState], None]] = []  # told of every task it finished

    async def submit(self, text: str, conversation: str | None = None) -> TaskState:
        task_id = uuid.uuid4().hex
        with spans.span(
            f"queue.publish {self.runtime.agent.metadata.name}",
            kind=spans.SpanKind.PRODUCER,
            attributes=self._span_attributes(task_id),
        ):
            state = TaskState(
                id=task_id,
                status="queued",
                task=text,
                conversation=conversation or task_id,
                created_at=time.time(),
                trace=inject(),
            )
            await self._submits(state)
        return state

    async def _submit_many(self, states: list[TaskState]) -> list[None]:
        await self.queue.submit_many(states)
        return [None] * len(states)

    def _span_attributes(self, task_id: str) -> dict[str, str]:
        return {
            spans.MESSAGING_SYSTEM: "redis" if isinstance(self.queue, RedisTaskQueue) else "local",
            spans.MESSAGING_DESTINATION: self.runtime.agent.metadata.name,
            spans.MESSAGING_MESSAGE_ID: task_id,
        }

    async def read(self, task_id: str) -> TaskState | None:
        return await self.queue.read(task_id)

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._take(), name="take"),
            asyncio.create_task(self._keep(), name="keep-alive"),
        ]

    async def _take(self) -> None:
        """Take up to the free capacity at a time, mark it running, start each task."""
        while self._taking:
            free = self._concurrency - len(self._running)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                deliveries = await self.queue.take_many(self.consumer, free, TAKE_WAIT_S)
                if deliveries and not self._taking:  # drained while waiting: not ours to run
                    for delivery in deliveries:
                        await self.queue.release(delivery)
                    return
                states = await self.queue.begin_many(self.consumer, deliveries)
            except AgentkubeError as e:
                log.warning("agent %s: cannot take tasks: %s", self.runtime.key, e)
                await asyncio.sleep(1)
                continue
            except Exception:  # what was taken is taken over after claim-idle
                log.exception("agent %s: taking a task failed", self.runtime.key)
                await asyncio.sleep(1)
                continue
            self._start(deliveries, states)

    def _start(self, deliveries: list[Delivery], states: list[TaskState | None]) -> None:
        for delivery, state in zip(deliveries, states, strict=True):
            if delivery.deliveries > 1:
                self.metrics.redeliveries.inc()
            if state is None:
                if delivery.deliveries > self.queue.max_deliveries:
                    self.metrics.dead_letters.inc()
                continue
            run = asyncio.create_task(self._handle(delivery, state), name=f"task-{state.id}")
            self._running[delivery.entry] = (delivery, run)
            run.add_done_callback(partial(self._ended, delivery.entry))

    def _ended(self, entry: str, _run: asyncio.Task[None]) -> None:
        self._running.pop(entry, None)
        self._room.set()

    async def _handle(self, delivery: Delivery, state: TaskState) -> None:
        self.metrics.wait.observe(max(0.0, (state.started_at or time.time()) - state.created_at))
        final = await self._run(state)
        for observe in self.observers:
            observe(final)
        try:
            wrote = await self._finishes((delivery, final))
        except Exception:  # not acknowledged: another replica runs it again after claim-idle
            log.exception("task %s of %s: writing its result failed", state.id, self.runtime.key)
            return
        if not wrote:
            log.info(
                "task %s of %s already had a result; this one dropped", state.id, self.runtime.key
            )

    async def _run(self, state: TaskState) -> TaskState:
        attributes: dict[str, str | int] = {
            **self._span_attributes(state.id),
            spans.DELIVERY_COUNT: state.deliveries,
        }
        with (
            continued(state.trace),
            spans.span(
                f"queue.process {self.runtime.agent.metadata.name}",
                kind=spans.SpanKind.CONSUMER,
                attributes=attributes,
            ),
        ):
            final = await self._outcome(state)
            if final.status != "succeeded":
                spans.mark_failed(final.error or "failed")
            return final

    async def _outcome(self, state: TaskState) -> TaskState:
        try:
            budget = _budget(state.budget)
            outcome = await self.runtime.run(
                state.task,
                conversation=state.conversation,
                chain=tuple(state.chain),
                budget=budget,
                task_id=state.id,
            )
        except AgentkubeError as e:
            return self._final(state, "failed", error=str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("task %s of agent %s failed", state.id, self.runtime.key)
            return self._final(state, "failed", error=f"internal error: {type(e).__name__}: {e}")
        return self._final(state, "succeeded", result=outcome.model_dump(mode="json"))

    @staticmethod
    def _final(state: TaskState, status: str, **update: object) -> TaskState:
        return state.model_copy(update={"status": status, "finished_at": time.time(), **update})

    async def _keep(self) -> None:
        """Every ``claim_idle / 3``: re-claim every running task for this replica, in one call,
        so only a replica that stopped (crashed, frozen) loses its tasks to the others."""
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self._keep_every)
                return
            except TimeoutError:
                pass
            # Stopped by an event, not cancelled: a Redis command cancelled mid-flight can
            # leave its pooled connection broken for the next user.
            running = [delivery for delivery, _ in self._running.values()]
            try:
                await self.queue.keep_many(self.consumer, running)
            except Exception as e:  # the next keep may work; the claim-idle margin is ours
                log.warning("agent %s: keep-alive failed: %s", self.runtime.key, e)

    async def drain(self) -> None:
        """Stop taking; finish what runs within ``drain_s``; give the rest back."""
        self._taking = False
        self._room.set()
        running = list(self._running.values())
        if running:
            log.info("agent %s: draining %d running tasks", self.runtime.key, len(running))
            _done, late = await asyncio.wait([run for _, run in running], timeout=self._drain_s)
            for delivery, run in running:
                if run in late:
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
                    await self.queue.release(delivery)
                    log.info("task %s released for another replica", delivery.task_id)
        await self._finishes.aclose()
        self._stopped.set()
        if self._loops:  # the take loop ends after its current take (it gives back what it got)
            _ended, stuck = await asyncio.wait(self._loops, timeout=TAKE_WAIT_S + 2)
            for loop in stuck:
                loop.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)


def _budget(fields: dict[str, float] | None) -> TaskBudget | None:
    """A subtask's budget as its caller recorded it (None: the agent's own)."""
    if not fields:
        return None
    return TaskBudget(
        max_model_requests=int(fields["max_model_requests"]), timeout_s=fields["timeout_s"]
    )


@asynccontextmanager
async def open_durable(
    runtime: AgentRuntime,
    *,
    redis_url: str | None,
    data_dir: Path | None = None,
    claim_idle_s: float = DEFAULT_CLAIM_IDLE_S,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    concurrency: int = 4,
    drain_s: float = 30.0,
) -> AsyncIterator[DurableTasks]:
    """The agent's shared queue — Redis Streams at ``redis_url`` (or ``AGENTKUBE_REDIS_URL``),
    else the embedded state store — with this replica's workers running; drained on exit."""
    from agentkube.memory.settings import MemorySettings, open_state_store
    from agentkube.memory.state.redis import RedisState
    from agentkube.memory.tenancy import key_prefix

    settings = MemorySettings.from_env(data_dir=data_dir, redis_url=redis_url)
    store = open_state_store(settings)
    agent = runtime.agent.metadata.name
    queue: TaskQueue
    try:
        if isinstance(store, RedisState):
            queue = RedisTaskQueue(
                store.client,
                key_prefix(store.namespace),
                agent,
                claim_idle_s=claim_idle_s,
                max_deliveries=max_deliveries,
            )
        else:
            queue = LocalTaskQueue(
                store, agent, claim_idle_s=claim_idle_s, max_deliveries=max_deliveries
            )
        tasks = DurableTasks(
            runtime, queue, concurrency=concurrency, claim_idle_s=claim_idle_s, drain_s=drain_s
        )
        tasks.start()
        log.info(
            "agent %s: replica %s consumes its queue at %s", runtime.key, tasks.consumer,
            store.location,
        )  # fmt: skip
        try:
            yield tasks
        finally:
            await tasks.drain()
    finally:
        await store.aclose()
