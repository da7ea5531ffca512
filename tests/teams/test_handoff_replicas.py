"""Replicas of one agent (`agent serve --redis`) sharing its queue: crashes lose nothing."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from agentkube.memory.tenancy import key_prefix
from tests.memory.servers import RedisServer
from tests.standins.serving import serve
from tests.teams import echo_model
from tests.teams.replicas import Replica

FINISHED = ("succeeded", "failed")


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def echo_server(delay_s: float) -> Iterator[str]:
    with serve(echo_model.create_app(delay_s)) as url:
        yield f"{url}/v1"


@pytest.fixture
def slow_model() -> Iterator[str]:
    yield from echo_server(0.4)


@pytest.fixture
def slower_model() -> Iterator[str]:
    yield from echo_server(3.0)


class Cluster:
    """Replicas of the agent `worker` on one Redis, in one namespace."""

    def __init__(self, tmp_path: Path, redis_url: str, model_url: str, namespace: str) -> None:
        self.tmp_path, self.redis_url, self.model_url = tmp_path, redis_url, model_url
        self.namespace = namespace
        self.replicas: list[Replica] = []

    def replica(
        self, *flags: str, claim_idle: float = 2.0, concurrency: int = 4, wait: bool = True
    ) -> Replica:
        replica = Replica(
            self.tmp_path,
            "--redis", self.redis_url, "--base-url", self.model_url,
            "--claim-idle", str(claim_idle), "--concurrency", str(concurrency), *flags,
            env={"AGENTKUBE_NAMESPACE": self.namespace},
        ).launch()  # fmt: skip
        self.replicas.append(replica)
        return replica.wait_ready() if wait else replica

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive and r.ready]

    def submit(self, client: httpx.Client, text: str) -> str:
        for attempt in range(20):
            target = random.choice(self.live())
            try:
                response = client.post(f"{target.url}/v1/tasks", json={"task": text})
            except httpx.HTTPError:  # killed meanwhile: another replica takes it
                time.sleep(0.05 * attempt)
                continue
            assert response.status_code == 202, response.text
            return str(response.json()["id"])
        raise AssertionError("no replica accepted the task")

    def read(self, client: httpx.Client, task_id: str) -> dict[str, Any]:
        for _ in range(20):
            try:
                response = client.get(f"{random.choice(self.live()).url}/v1/tasks/{task_id}")
            except httpx.HTTPError:
                continue
            assert response.status_code == 200, response.text
            return dict(response.json())
        raise AssertionError(f"no replica answered for task {task_id}")

    def wait_all(self, client: httpx.Client, ids: list[str], timeout: float) -> dict[str, Any]:
        views: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for task_id in [i for i in ids if i not in views]:
                view = self.read(client, task_id)
                if view["status"] in FINISHED:
                    views[task_id] = view
            if len(views) == len(ids):
                return views
            time.sleep(0.2)
        raise AssertionError(f"{len(ids) - len(views)} of {len(ids)} tasks never finished")

    def records(self) -> dict[str, dict[str, Any]]:
        import json

        client = redis.Redis.from_url(self.redis_url)
        prefix = key_prefix(self.namespace) + "teams:worker:"
        try:
            found = {}
            for key in client.scan_iter(match=prefix + "task:*", count=1000):
                body = client.get(key)
                assert isinstance(body, bytes)
                record = json.loads(body)
                found[record["id"]] = record
            return found
        finally:
            client.close()

    def results(self) -> list[str]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            entries: Any = client.xrange(key_prefix(self.namespace) + "teams:worker:results")
            return [fields[b"id"].decode() for _, fields in entries]
        finally:
            client.close()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, redis_server: RedisServer, slow_model: str, namespace: str
) -> Iterator[Cluster]:
    group = Cluster(tmp_path, redis_server.url, slow_model, namespace)
    yield group
    group.stop()


def test_any_replica_accepts_a_task_and_any_replica_answers_for_it(cluster: Cluster) -> None:
    a, b = cluster.replica(), cluster.replica()
    with httpx.Client(timeout=10) as client:
        submitted = client.post(f"{a.url}/v1/tasks", json={"task": "hello"})
        assert submitted.status_code == 202
        assert submitted.json()["status"] == "queued"
        task_id = submitted.json()["id"]
        deadline = time.monotonic() + 30
        while (view := client.get(f"{b.url}/v1/tasks/{task_id}").json())["status"] not in FINISHED:
            assert time.monotonic() < deadline, view
            time.sleep(0.1)
        assert view["status"] == "succeeded"
        assert view["result"]["output"] == "echo: hello"
        assert client.get(f"{b.url}/v1/tasks/nope").status_code == 404


def test_replicas_killed_mid_task_lose_nothing_and_duplicate_nothing(cluster: Cluster) -> None:
    for replica in [cluster.replica(wait=False) for _ in range(3)]:
        replica.wait_ready()
    texts = [f"task number {i}" for i in range(200)]
    with httpx.Client(timeout=10) as client:
        ids = [cluster.submit(client, text) for text in texts]
        replacements = []
        for _ in range(2):  # kill -9 a replica running tasks, start a new one (not waited for)
            time.sleep(1.0)
            random.choice(cluster.live()).kill()
            replacements.append(cluster.replica(wait=False))
        for replica in replacements:  # ... until the newcomers run too
            replica.wait_ready()
        time.sleep(1.0)
        random.choice(cluster.live()).kill()  # and once more, with everyone up
        views = cluster.wait_all(client, ids, timeout=300)
    assert sum(1 for r in cluster.replicas if not r.alive) == 3
    for task_id, text in zip(ids, texts, strict=True):
        assert views[task_id]["status"] == "succeeded", views[task_id]
        assert views[task_id]["result"]["output"] == f"echo: {text}"
    results = cluster.results()
    assert sorted(results) == sorted(ids)  # each task's result written exactly once
    redelivered = [r for r in cluster.records().values() if r["deliveries"] > 1]
    assert redelivered, "no task was running on a killed replica: the test proved nothing"


def test_sigterm_lets_running_tasks_finish_before_the_replica_exits(
    tmp_path: Path, redis_server: RedisServer, slower_model: str, namespace: str
) -> None:
    group = Cluster(tmp_path, redis_server.url, slower_model, namespace)
    try:
        replica = group.replica(claim_idle=60, concurrency=2)
        with httpx.Client(timeout=10) as client:
            ids = [group.submit(client, f"drain {i}") for i in range(2)]
            deadline = time.monotonic() + 30
            while any(group.read(client, i)["status"] != "running" for i in ids):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        replica.terminate()
        records = group.records()
        assert [records[i]["status"] for i in ids] == ["succeeded", "succeeded"]
        assert sorted(group.results()) == sorted(ids)
    finally:
        group.stop()


def test_a_draining_replica_gives_unfinished_tasks_back_at_once(
    tmp_path: Path, redis_server: RedisServer, slower_model: str, namespace: str
) -> None:
    group = Cluster(tmp_path, redis_server.url, slower_model, namespace)
    try:
        first = group.replica("--drain-timeout", "0", claim_idle=120, concurrency=1)
        with httpx.Client(timeout=10) as client:
            task_id = group.submit(client, "too slow to finish")
            deadline = time.monotonic() + 30
            while group.read(client, task_id)["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            first.terminate()
            group.replica(claim_idle=120)
            started = time.monotonic()
            view = group.wait_all(client, [task_id], timeout=60)[task_id]
        assert view["status"] == "succeeded"
        assert time.monotonic() - started < 60  # well before the 120 s claim-idle
        assert group.records()[task_id]["deliveries"] == 1  # a fresh entry, not a claim
    finally:
        group.stop()
