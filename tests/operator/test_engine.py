"""The engine's own parts without a cluster: the indexed cache and the owners' reconcile loop."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from agentkube.operator.indexing import STALE_SECONDS, IndexedCache, index_name
from agentkube.operator.owners import Owners, Ref

JSON = dict[str, Any]


def deployment(version: str, replicas: int = 1) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": version, "uid": "u"},
        "spec": {"replicas": replicas},
    }


def cache_over(index: dict[tuple[str, str], list[JSON]], clock: list[float]) -> IndexedCache:
    cache = IndexedCache({"Deployment": "deployments"}, clock=lambda: clock[0])
    cache.attach({index_name("deployments"): index})
    return cache


def replicas(cache: IndexedCache) -> int | None:
    body = cache.get("Deployment", "ns", "a")
    return None if body is None else int(body["spec"]["replicas"])


def test_a_write_is_seen_until_the_watch_brings_its_version() -> None:
    index, clock = {("ns", "a"): [deployment("opaque-1")]}, [0.0]
    cache = cache_over(index, clock)
    cache.put(deployment("opaque-3", replicas=3))
    assert replicas(cache) == 3
    # Another writer's change that came before it (kopf's finalizer, say): still older news.
    index[("ns", "a")] = [deployment("opaque-2", replicas=1)]
    assert replicas(cache) == 3
    index[("ns", "a")] = [deployment("opaque-3", replicas=3)]
    assert replicas(cache) == 3
    index[("ns", "a")] = [deployment("opaque-0", replicas=5)]  # not "older": just later
    assert replicas(cache) == 5


def test_a_write_the_watch_never_brings_gives_way_to_the_index() -> None:
    index, clock = {("ns", "a"): [deployment("1")]}, [0.0]
    cache = cache_over(index, clock)
    cache.put(deployment("2", replicas=3))
    index[("ns", "a")] = [deployment("9", replicas=4)]  # a re-list skipped version 2
    assert replicas(cache) == 3
    clock[0] = STALE_SECONDS + 1
    assert replicas(cache) == 4


def test_a_deletion_hides_the_object_until_the_index_drops_it() -> None:
    index, clock = {("ns", "a"): [deployment("7")]}, [0.0]
    cache = cache_over(index, clock)
    cache.remove("Deployment", "ns", "a")
    assert cache.get("Deployment", "ns", "a") is None
    del index[("ns", "a")]
    assert cache.get("Deployment", "ns", "a") is None
    index[("ns", "a")] = [deployment("9")]  # made again by someone
    assert cache.get("Deployment", "ns", "a") is not None


def test_without_indexes_the_cache_holds_what_was_put() -> None:
    cache = IndexedCache()
    cache.put(deployment("1"))
    assert cache.get("Deployment", "ns", "a") is not None
    assert cache.count("Deployment") == 0  # nothing indexed


def test_trimmed_bodies_drop_managed_fields() -> None:
    cache = IndexedCache()
    body = deployment("1")
    body["metadata"]["managedFields"] = [{"manager": "x"}]
    cache.put(body)
    assert "managedFields" not in cache.get("Deployment", "ns", "a")["metadata"]  # type: ignore[index]


REF: Ref = ("Agent", "ns", "a")


class Stopper:
    """kopf's ``stopped`` flag as a daemon sees it (false until set, awaitable)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        return await self.event.wait()


async def test_a_failing_reconcile_asks_kopf_to_retry_with_backoff() -> None:
    runs: list[Ref] = []

    async def work(ref: Ref) -> bool:
        runs.append(ref)
        return True

    owners = Owners(work, concurrency=4, resync_seconds=60, retry_seconds=2, max_retry_seconds=5)
    delays = []
    for _ in range(3):
        with pytest.raises(kopf.TemporaryError) as raised:
            await owners.run(REF, Stopper())
        delays.append(raised.value.delay)
    assert delays == [2, 4, 5] and runs == [REF] * 3


async def test_wakes_during_a_reconcile_ask_for_exactly_one_more() -> None:
    started, release, runs = asyncio.Event(), asyncio.Event(), []

    async def work(ref: Ref) -> bool:
        runs.append(ref)
        if len(runs) == 1:
            started.set()
            await release.wait()
        return len(runs) >= 2  # the second run ends the loop (as a retry)

    owners = Owners(work, concurrency=4, resync_seconds=60, retry_seconds=1, max_retry_seconds=1)
    loop = asyncio.create_task(owners.run(REF, Stopper()))
    await started.wait()
    for _ in range(5):
        owners.wake(REF)
    release.set()
    with pytest.raises(kopf.TemporaryError):
        await loop
    assert len(runs) == 2


async def test_a_forgotten_object_starts_its_back_off_afresh() -> None:
    async def failing(ref: Ref) -> bool:
        return True

    owners = Owners(failing, concurrency=1, resync_seconds=60, retry_seconds=1, max_retry_seconds=8)
    for expected in (1, 2, 4):
        with pytest.raises(kopf.TemporaryError) as raised:
            await owners.run(REF, Stopper())
        assert raised.value.delay == expected
    owners.forget(REF)  # deleted, and made again under the same name
    with pytest.raises(kopf.TemporaryError) as raised:
        await owners.run(REF, Stopper())
    assert raised.value.delay == 1


async def test_a_stopped_daemon_returns_without_another_reconcile() -> None:
    runs: list[Ref] = []

    async def work(ref: Ref) -> bool:
        runs.append(ref)
        return False

    owners = Owners(work, concurrency=1, resync_seconds=60, retry_seconds=1, max_retry_seconds=1)
    stopped = Stopper()
    loop = asyncio.create_task(owners.run(REF, stopped))
    while not runs:  # the first pass
        await asyncio.sleep(0)
    stopped.event.set()
    await asyncio.wait_for(loop, 5)  # it returned on its own, no cancellation needed
    assert runs == [REF]
