"""An agent's incident is a Warning Event on its Agent, through the real API server: the
operator runs with deploy/'s RBAC and shared memory on a real ``redis-server``; the agent's side
is the runtime's real queue dead-lettering a task, as the namespace's own Redis user."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkube.memory.state.redis import RedisState
from agentkube.memory.tenancy import key_prefix
from agentkube.operator.memory import URL_KEY
from agentkube.runtime.incidents import IncidentStream
from agentkube.runtime.task_queue import RedisTaskQueue, TaskState
from tests.memory.servers import RedisServer
from tests.operator.operator_process import (
    OperatorProcess,
    cluster_config,
    instead_of,
    redis_memory,
)
from tests.operator.test_cluster import ENDPOINT_MODEL, agent, wait_condition
from tests.operator.test_memory_cluster import decoded, memory_installed, memory_secret
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

__all__ = ["memory_installed"]  # the fixture, shared with the memory tests


@pytest.fixture(scope="module")
def incidents_operator(
    memory_installed: Cluster,
    redis_with_admin_password: RedisServer,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
) -> Iterator[OperatorProcess]:
    memory = redis_memory(redis_with_admin_password.port)
    config = cluster_config(memory_installed, memory=memory, incidentSeconds=1)
    workdir = tmp_path_factory.mktemp("incidents-operator")
    with instead_of(operator, memory_installed, operator_kubeconfig, workdir, config) as op:
        yield op


async def dead_letter(url: str, namespace: str, agent_name: str) -> str:
    """A task delivered once too often, as the agent's replicas would: its id."""
    store = RedisState(url, namespace)
    queue = RedisTaskQueue(
        store.client, key_prefix(namespace), agent_name, claim_idle_s=0.05, max_deliveries=1
    )
    task = TaskState(
        id=uuid.uuid4().hex, status="queued", task="x", conversation="c", created_at=0.0
    )
    try:
        await queue.submit(task)
        first = await queue.take("replica-1", 1.0)
        assert first is not None and await queue.begin("replica-1", first) is not None
        await asyncio.sleep(0.1)  # ... and replica-1 dies
        second = await queue.take("replica-2", 1.0)
        assert second is not None and await queue.begin("replica-2", second) is None
    finally:
        await store.aclose()
    return task.id


async def record(url: str, namespace: str, agent_name: str) -> None:
    store = RedisState(url, namespace)
    try:
        incidents = IncidentStream(store.client, key_prefix(namespace), agent_name)
        await incidents.record("DelegationFailed", "t-2", "delegation to agent 'x': boom")
    finally:
        await store.aclose()


def events_of(
    cluster: Cluster, namespace: str, name: str, reason: str = "TaskDeadLettered"
) -> list[dict[str, Any]]:
    result = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind=Agent,involvedObject.name={name},reason={reason}",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def test_a_dead_lettered_task_is_a_warning_event_on_the_agent(
    memory_installed: Cluster, incidents_operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = memory_installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("worker", "m", role="executor"), ns)
    wait_condition(cluster, "agent", "worker", ns, "MemoryReady")
    url = decoded(memory_secret(cluster, ns), URL_KEY)  # the namespace user's, as pods get it
    task_id = asyncio.run(dead_letter(url, ns, "worker"))
    found = cluster.wait_until(
        lambda: events_of(cluster, ns, "worker"), "a TaskDeadLettered Event on the Agent", 60
    )
    (event,) = found
    assert event["type"] == "Warning"
    assert event["involvedObject"]["apiVersion"] == "ai.openvn/v1"
    assert event["message"].startswith(f"task {task_id}: dead-lettered: delivered 1 times")
    described = cluster.kubectl("describe", "agent", "worker", "-n", ns).stdout
    assert "TaskDeadLettered" in described and task_id in described
    # Read once, posted once: a later incident is posted, the first not again.
    asyncio.run(record(url, ns, "worker"))
    cluster.wait_until(
        lambda: events_of(cluster, ns, "worker", "DelegationFailed"), "DelegationFailed", 60
    )
    assert len(events_of(cluster, ns, "worker")) == 1
