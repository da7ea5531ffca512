"""A planner killed (SIGKILL) while it waits on a subtask picks the executor's result up after a
restart instead of sending the subtask again: real ``redis-server``, real ``agent serve``
processes (the planner on the offline model, the executor on the slow echo stand-in)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from agentkube.memory.team_streams import task_stream
from agentkube.runtime.agent import TaskBudget
from agentkube.runtime.delegation import Subtask
from agentkube.runtime.queued_team import subtask_id
from agentkube.runtime.task_queue import TaskState
from tests.memory.servers import RedisServer
from tests.standins.serving import serve
from tests.teams import echo_model
from tests.teams.replicas import Replica

TEAM = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: planner}
spec: {model: offline, role: planner, tools: ["agent:coder"], memory: none}
---
apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: coder}
spec: {model: echo-model, role: executor, memory: none}
"""
NAMESPACE = "restarts"
SUBTASK = "count the primes below 100"


@pytest.fixture
def echo() -> Iterator[tuple[str, list[str]]]:
    app = echo_model.create_app(4.0)  # long enough to kill the planner while it waits
    with serve(app) as url:
        yield f"{url}/v1", app.state.served


def wait_for(probe: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def record(client: redis.Redis, agent: str, task_id: str) -> TaskState | None:
    body = client.get(f"agentkube:{NAMESPACE}:teams:{agent}:task:{task_id}")
    return None if body is None else TaskState.model_validate_json(body)


def test_a_restarted_planner_uses_the_executors_result_and_sends_nothing_twice(
    tmp_path: Path, redis_server: RedisServer, echo: tuple[str, list[str]]
) -> None:
    manifest = tmp_path / "team.yaml"
    manifest.write_text(TEAM)
    env = {"AGENTKUBE_NAMESPACE": NAMESPACE}
    common = ("--redis", redis_server.url, "--claim-idle", "2")
    model_url, served = echo

    def planner() -> Replica:
        # --peer: the A2A fallback; with Redis the subtask goes through coder's queue.
        flags = ("--agent", "planner", "--peer", "coder=http://127.0.0.1:9", *common)
        return Replica(tmp_path, *flags, env=env, manifest=manifest).start()

    lead = planner()
    coder = Replica(
        tmp_path, "--agent", "coder", "--base-url", model_url, *common, env=env, manifest=manifest
    ).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        response = httpx.post(f"{lead.url}/v1/tasks", json={"task": f"@coder: {SUBTASK}"})
        assert response.status_code == 202, response.text
        parent = response.json()["id"]
        first_call = Subtask(
            target="coder", task=SUBTASK, chain=(), budget=TaskBudget(), parent=parent, call=1
        )
        child = subtask_id(first_call)  # what the planner derives for its first agent: call
        running = wait_for(
            lambda: (r := record(client, "coder", child)) and r.status == "running" and r,
            "the subtask running on coder",
        )
        assert running.chain == ["planner"]  # the caller's chain travels with it
        lead.kill()  # mid-wait: the subtask runs on, its result lands in Redis
        done = wait_for(
            lambda: (r := record(client, "coder", child)) and r.done and r, "the subtask done"
        )
        assert done.status == "succeeded"
        restarted = planner()  # reclaims its task after claim-idle and runs it again

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(f"{restarted.url}/v1/tasks/{parent}").json()
            return body if body["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, "the planner's task to finish")
        assert final["status"] == "succeeded", final
        assert f"echo: {SUBTASK}" in final["result"]["output"]
        assert client.xlen(task_stream(NAMESPACE, "coder")) == 1  # enqueued once
        assert served == [SUBTASK]  # and run once
        planner_record = record(client, "planner", parent)
        assert planner_record is not None and planner_record.deliveries == 2
        restarted.stop()
    finally:
        lead.stop()
        coder.stop()
        client.close()
