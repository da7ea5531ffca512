"""GroupCommit: the first write goes at once, writes arriving meanwhile go together next."""

from __future__ import annotations

import asyncio

import pytest

from agentkube.runtime.batching import GroupCommit


class Store:
    """Records each flush's batch; a flush takes until ``release`` is set."""

    def __init__(self) -> None:
        self.flushes: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False

    async def flush(self, items: list[int]) -> list[int]:
        self.flushes.append(list(items))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store went away")
        return [item * 10 for item in items]


async def test_an_idle_store_gets_the_first_item_at_once_and_alone() -> None:
    store = Store()
    commit = GroupCommit(store.flush)
    assert await commit(1) == 10
    assert store.flushes == [[1]]


async def test_items_arriving_during_a_flush_go_together_in_the_next() -> None:
    store = Store()
    store.release.clear()
    commit = GroupCommit(store.flush)
    first = asyncio.create_task(commit(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(commit(i)) for i in range(2, 6)]
    await asyncio.sleep(0)
    assert store.flushes == [[1]]  # the rest wait for the flush in flight
    store.release.set()
    assert await first == 10
    assert [await t for t in later] == [20, 30, 40, 50]  # each caller gets its own result
    assert store.flushes == [[1], [2, 3, 4, 5]]


async def test_a_batch_is_bounded() -> None:
    store = Store()
    store.release.clear()
    commit = GroupCommit(store.flush, max_batch=2)
    calls = [asyncio.create_task(commit(i)) for i in range(5)]
    await asyncio.sleep(0)
    store.release.set()
    assert [await c for c in calls] == [0, 10, 20, 30, 40]
    assert store.flushes == [[0, 1], [2, 3], [4]]


async def test_a_failed_flush_fails_its_callers_and_the_next_flush_works() -> None:
    store = Store()
    store.release.clear()
    store.fail_next = True
    commit = GroupCommit(store.flush)
    failing = [asyncio.create_task(commit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    store.release.set()
    for call in failing:
        with pytest.raises(ConnectionError, match="store went away"):
            await call
    assert await commit(3) == 30
    assert store.flushes == [[1, 2], [3]]


async def test_a_flush_returning_the_wrong_number_of_results_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    commit: GroupCommit[int, int] = GroupCommit(short)
    with pytest.raises(RuntimeError, match="a flush of 1 items gave 0"):
        await commit(1)
