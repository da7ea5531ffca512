"""The durable hand-off's queue, on real Redis Streams and in one process: same semantics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agentkube.memory.state.redis import RedisState
from agentkube.memory.state.sqlite import SqliteState
from agentkube.memory.tenancy import (
    delete_redis_user,
    ensure_redis_user,
    key_prefix,
    namespace_url,
)
from agentkube.runtime.local_queue import LocalTaskQueue
from agentkube.runtime.task_queue import Delivery, RedisTaskQueue, TaskQueue, TaskState
from tests.memory.servers import RedisServer

CLAIM_IDLE_S = 0.3


@pytest.fixture(params=["redis", "redis-namespace-user", "local"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskQueue]:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    store: RedisState | SqliteState
    admin: aioredis.Redis | None = None
    if request.param.startswith("redis"):
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
        if request.param == "redis-namespace-user":  # what agent pods get in a cluster
            admin, password = aioredis.from_url(server.url), uuid.uuid4().hex
            await ensure_redis_user(admin, namespace, password)
            url = namespace_url(server.url, namespace, password)
        store = RedisState(url, namespace)
        yield RedisTaskQueue(
            store.client,
            key_prefix(namespace),
            "coder",
            claim_idle_s=CLAIM_IDLE_S,
            max_deliveries=2,
        )
    else:
        store = SqliteState(tmp_path / "state.sqlite3", namespace)
        yield LocalTaskQueue(store, "coder", claim_idle_s=CLAIM_IDLE_S, max_deliveries=2)
    await store.aclose()
    if admin is not None:
        await delete_redis_user(admin, namespace)
        await admin.aclose()


def _state(text: str = "add 2 and 3") -> TaskState:
    task_id = uuid.uuid4().hex
    return TaskState(
        id=task_id, status="queued", task=text, conversation=task_id, created_at=time.time()
    )


async def test_a_submitted_task_is_delivered_once_and_its_result_written_once(
    queue: TaskQueue,
) -> None:
    state = _state()
    await queue.submit(state)
    assert (await queue.read(state.id)) == state
    delivery = await queue.take("replica-a", 1.0)
    assert delivery is not None and delivery.task_id == state.id and delivery.deliveries == 1
    running = await queue.begin("replica-a", delivery)
    assert running is not None and running.status == "running" and running.replica == "replica-a"
    assert await queue.take("replica-b", 0.1) is None  # nobody else gets it meanwhile
    done = running.model_copy(update={"status": "succeeded", "result": {"output": "5"}})
    assert await queue.finish(delivery, done) is True
    late = running.model_copy(update={"status": "succeeded", "result": {"output": "again"}})
    assert await queue.finish(delivery, late) is False  # a redelivered run never overwrites
    final = await queue.read(state.id)
    assert final is not None and final.result == {"output": "5"}


async def test_a_silent_replicas_task_is_taken_over_after_claim_idle(queue: TaskQueue) -> None:
    state = _state()
    await queue.submit(state)
    first = await queue.take("crashed", 1.0)
    assert first is not None
    await queue.begin("crashed", first)
    assert await queue.take("survivor", 0.05) is None  # not idle long enough yet
    await asyncio.sleep(CLAIM_IDLE_S + 0.1)
    second = await queue.take("survivor", 0.05)
    assert second is not None and second.task_id == state.id and second.deliveries == 2


async def test_a_kept_task_is_not_taken_over(queue: TaskQueue) -> None:
    await queue.submit(_state())
    mine = await queue.take("alive", 1.0)
    assert mine is not None
    for _ in range(4):
        await asyncio.sleep(CLAIM_IDLE_S / 2)
        await queue.keep("alive", mine)
        assert await queue.take("other", 0.01) is None


async def test_a_task_delivered_too_often_is_dead_lettered_with_a_clear_status(
    queue: TaskQueue,
) -> None:
    state = _state()
    await queue.submit(state)
    for attempt in (1, 2):
        delivery = await queue.take(f"replica-{attempt}", 1.0)
        assert delivery is not None and delivery.deliveries == attempt
        assert await queue.begin(f"replica-{attempt}", delivery) is not None
        await asyncio.sleep(CLAIM_IDLE_S + 0.1)  # ... and the replica dies
    third = await queue.take("replica-3", 1.0)
    assert third is not None and third.deliveries == 3
    assert await queue.begin("replica-3", third) is None
    dead = await queue.read(state.id)
    assert dead is not None and dead.status == "failed"
    assert dead.error is not None and dead.error.startswith("dead-lettered: delivered 2 times")
    assert await queue.take("replica-4", 0.05) is None  # gone from the queue


async def test_a_released_task_is_taken_at_once_by_another_replica(queue: TaskQueue) -> None:
    state = _state()
    await queue.submit(state)
    draining = await queue.take("draining", 1.0)
    assert draining is not None
    await queue.release(draining)
    other = await queue.take("other", 1.0)
    assert other is not None and other.task_id == state.id


async def test_redis_results_stream_names_each_finished_task_once(
    redis_server: RedisServer,
) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    store = RedisState(redis_server.url, namespace)
    queue = RedisTaskQueue(store.client, key_prefix(namespace), "coder", claim_idle_s=CLAIM_IDLE_S)
    states = [_state(f"task {i}") for i in range(5)]
    for state in states:
        await queue.submit(state)
    for _ in states:
        delivery = await queue.take("r", 1.0)
        assert delivery is not None
        running = await queue.begin("r", delivery)
        assert running is not None
        done = running.model_copy(update={"status": "succeeded"})
        await queue.finish(delivery, done)
        await queue.finish(delivery, done)  # twice: still one result
    entries: Any = await store.client.xrange(queue.results_stream)
    assert sorted(fields[b"id"].decode() for _, fields in entries) == sorted(s.id for s in states)
    await store.aclose()


async def _running(queue: TaskQueue, consumer: str) -> tuple[TaskState, Delivery, TaskState]:
    """A new task, taken and begun by ``consumer``: its state, delivery and running record."""
    state = _state()
    await queue.submit(state)
    delivery = await queue.take(consumer, 1.0)
    assert delivery is not None
    running = await queue.begin(consumer, delivery)
    assert running is not None
    return state, delivery, running


async def test_replicas_finishing_one_task_at_once_write_exactly_one_result(
    queue: TaskQueue,
) -> None:
    state, delivery, running = await _running(queue, "r")
    outcomes = [
        running.model_copy(update={"status": "succeeded", "result": {"output": str(i)}})
        for i in range(8)
    ]
    wrote = await asyncio.gather(*(queue.finish(delivery, o) for o in outcomes))
    assert sorted(wrote) == [False] * 7 + [True]
    final = await queue.read(state.id)
    assert final is not None and final.result == outcomes[wrote.index(True)].result


async def test_a_late_begin_never_sets_a_finished_record_back_to_running(
    queue: TaskQueue,
) -> None:
    """A replica that took a task over (its first runner seemed dead) begins it while the
    first runner finishes it: whichever order Redis sees, the result stays."""
    for _ in range(20):
        state, first, running = await _running(queue, "slow")
        await asyncio.sleep(CLAIM_IDLE_S + 0.05)
        second = await queue.take("taker", 1.0)
        assert second is not None and second.task_id == state.id
        done = running.model_copy(update={"status": "succeeded", "result": {"output": "5"}})
        await asyncio.gather(queue.finish(first, done), queue.begin("taker", second))
        final = await queue.read(state.id)
        assert final is not None and final.status == "succeeded", final


async def test_batches_take_begin_and_finish_many_tasks_in_order(queue: TaskQueue) -> None:
    states = [_state(f"task {i}") for i in range(30)]
    await queue.submit_many(states)
    taken = await queue.take_many("r", 20, 1.0)
    assert [d.task_id for d in taken] == [s.id for s in states[:20]]
    assert all(d.deliveries == 1 for d in taken)
    began = await queue.begin_many("r", taken)
    assert all(b is not None and b.status == "running" for b in began)
    await queue.keep_many("r", taken)
    done = [
        (d, b.model_copy(update={"status": "succeeded"}))
        for d, b in zip(taken, began, strict=True)
        if b
    ]
    assert await queue.finish_many([*done, done[0]]) == [True] * 20 + [False]
    rest = await queue.take_many("r", 20, 1.0)
    assert [d.task_id for d in rest] == [s.id for s in states[20:]]  # the ten left
    for state in states[:20]:
        record = await queue.read(state.id)
        assert record is not None and record.status == "succeeded"


async def test_a_batch_takes_stale_deliveries_first_with_their_counts(queue: TaskQueue) -> None:
    stale, new = _state("stale"), _state("new")
    await queue.submit(stale)
    crashed = await queue.take("crashed", 1.0)
    assert crashed is not None
    await queue.submit(new)
    await asyncio.sleep(CLAIM_IDLE_S + 0.05)
    taken = await queue.take_many("survivor", 5, 1.0)
    assert [(d.task_id, d.deliveries) for d in taken] == [(stale.id, 2), (new.id, 1)]
