"""An agent records its incidents in its own Redis stream, as its namespace's ACL user: a task
dead-lettered by the real queue, a delegation that really failed, real refusals by a real
sandbox gateway on loopback. Recording never fails the task."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.gateway.app import GatewaySettings, create_app
from agentkube.gateway.auth import StaticTokens
from agentkube.gateway.client import RemoteSandbox
from agentkube.memory.state.redis import RedisState
from agentkube.memory.team_streams import incident_stream
from agentkube.memory.tenancy import delete_redis_user, ensure_redis_user, namespace_url
from agentkube.runtime.incidents import IncidentStream, open_incidents
from agentkube.runtime.task_queue import RedisTaskQueue, TaskState
from agentkube.runtime.tools import ToolEnvironment
from agentkube.sandbox.contract import Limits
from agentkube.sandbox.policy import SandboxPolicy
from tests.memory.servers import RedisServer
from tests.runtime.helpers import agent_from, runtime_for
from tests.standins.serving import serve
from tests.teams.helpers import team_of

JSON = dict[str, Any]


@dataclass(frozen=True)
class Tenant:
    """A namespace whose ACL user is what the agent connects as (what agent pods get)."""

    namespace: str
    url: str  # the namespace user's
    store: RedisState

    def incidents(self, agent: str) -> IncidentStream:
        return IncidentStream(self.store.client, f"agentkube:{self.namespace}:", agent)


@pytest.fixture
async def tenant(redis_server: RedisServer) -> AsyncIterator[Tenant]:
    namespace, password = f"inc-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = aioredis.from_url(redis_server.url)
    await ensure_redis_user(admin, namespace, password)
    url = namespace_url(redis_server.url, namespace, password)
    store = RedisState(url, namespace)
    yield Tenant(namespace, url, store)
    await store.aclose()
    await delete_redis_user(admin, namespace)
    await admin.aclose()


async def recorded(redis_server: RedisServer, namespace: str, agent: str) -> list[JSON]:
    """The agent's incidents, read as the operator's admin reads the server."""
    admin = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        entries = await admin.xrange(incident_stream(namespace, agent)) or []
    finally:
        await admin.aclose()
    return [{str(k): v for k, v in (fields or {}).items()} for _id, fields in entries]


async def test_a_task_delivered_past_max_deliveries_is_recorded_as_dead_lettered(
    tenant: Tenant, redis_server: RedisServer
) -> None:
    prefix = f"agentkube:{tenant.namespace}:"
    queue = RedisTaskQueue(tenant.store.client, prefix, "coder", claim_idle_s=0.2, max_deliveries=1)
    state = TaskState(
        id=uuid.uuid4().hex, status="queued", task="x", conversation="c", created_at=0.0
    )
    await queue.submit(state)
    first = await queue.take("replica-1", 1.0)
    assert first is not None and await queue.begin("replica-1", first) is not None
    await asyncio.sleep(0.3)  # ... and replica-1 dies
    second = await queue.take("replica-2", 1.0)
    assert second is not None and second.deliveries == 2
    assert await queue.begin("replica-2", second) is None
    (incident,) = await recorded(redis_server, tenant.namespace, "coder")
    assert incident["kind"] == "TaskDeadLettered" and incident["task"] == state.id
    assert incident["message"].startswith("dead-lettered: delivered 1 times (limit 1)")


def delegating(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("agent_coder", {"task": "compute 6*7"})])
    return ModelResponse(parts=[TextPart("the coder failed")])


def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    raise RuntimeError("the executor's model exploded")


async def test_a_failed_delegation_is_recorded_on_the_delegating_agent(
    tenant: Tenant, redis_server: RedisServer
) -> None:
    team, _ = team_of({"coder": ("{model: m}", broken)})
    planner = runtime_for(
        agent_from("{model: m, tools: ['agent:coder']}", name="planner"),
        FunctionModel(delegating),
        tools=ToolEnvironment(delegator=team, incidents=tenant.incidents("planner")),
    )
    outcome = await planner.run("what is 6*7?", task_id="task-of-the-planner")
    assert outcome.output == "the coder failed"  # the run went on: the model was told
    (incident,) = await recorded(redis_server, tenant.namespace, "planner")
    assert incident["kind"] == "DelegationFailed" and incident["task"] == "task-of-the-planner"
    assert incident["message"].startswith("delegation to agent 'coder': agent 'coder' failed")
    assert "exploded" in incident["message"]
    assert await recorded(redis_server, tenant.namespace, "coder") == []


def running_code(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("python-interpreter", {"code": "print(1)"})])
    return ModelResponse(parts=[TextPart("the sandbox would not")])


@pytest.fixture
def gateway() -> Iterator[str]:
    """A real gateway on loopback that knows one token and allows at most 1 CPU."""
    from agentkube.sandbox.local import LocalSandbox

    settings = GatewaySettings(policy=SandboxPolicy(max_cpu=1.0))
    with serve(create_app(LocalSandbox(), StaticTokens({"known": "agent"}), settings)) as url:
        yield url


@pytest.mark.parametrize(
    ("token", "limits", "said"),
    [
        ("unknown", Limits(), "refused us"),
        ("known", Limits(cpu=2.0), "limits.cpu: asked for 2"),
    ],
    ids=["credentials", "policy"],
)
async def test_a_sandbox_refusal_is_recorded_and_the_run_goes_on(
    tenant: Tenant,
    redis_server: RedisServer,
    gateway: str,
    token: str,
    limits: Limits,
    said: str,
) -> None:
    sandbox = RemoteSandbox(gateway, token=lambda: token)
    runtime = runtime_for(
        agent_from("{model: m, tools: [python-interpreter]}", name="coder"),
        FunctionModel(running_code),
        tools=ToolEnvironment(sandbox=sandbox, limits=limits, incidents=tenant.incidents("coder")),
    )
    try:
        outcome = await runtime.run("print one", task_id="task-1")
    finally:
        await sandbox.aclose()
    assert outcome.output == "the sandbox would not"
    (call,) = outcome.tool_calls
    assert call.ok is False
    (incident,) = await recorded(redis_server, tenant.namespace, "coder")
    assert incident["kind"] == "SandboxRefused" and incident["task"] == "task-1"
    assert said in incident["message"]


async def test_a_redis_that_is_down_costs_a_log_line_never_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        incidents = IncidentStream(down, "agentkube:ns:", "planner")
        with caplog.at_level(logging.WARNING):
            await incidents.record("DelegationFailed", "task-9", "delegation to agent 'x': boom")
    finally:
        await down.aclose()
    (line,) = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert "planner" in line and "task-9" in line and "boom" in line


async def test_the_stream_is_bounded_and_a_message_is_one_clipped_line(
    tenant: Tenant, redis_server: RedisServer
) -> None:
    incidents = IncidentStream(tenant.store.client, f"agentkube:{tenant.namespace}:", "a", kept=50)
    for i in range(300):
        await incidents.record("SandboxRefused", f"t{i}", "line one\nline two " + "x" * 1000)
    entries = await recorded(redis_server, tenant.namespace, "a")
    assert 50 <= len(entries) < 300  # MAXLEN ~: trimmed in whole nodes, never unbounded
    assert entries[-1]["task"] == "t299"
    message = entries[-1]["message"]
    assert message.startswith("line one line two x") and len(message) == 400


async def test_without_redis_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTKUBE_REDIS_URL", raising=False)
    async with open_incidents(redis_url=None) as incidents_of:
        assert type(incidents_of("planner")).__name__ == "NoIncidents"


async def test_agent_serve_records_as_the_namespace_user(
    tenant: Tenant, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKUBE_NAMESPACE", tenant.namespace)
    async with open_incidents(redis_url=tenant.url) as incidents_of:
        await incidents_of("planner").record("DelegationFailed", "t", "m")
    assert await recorded(redis_server, tenant.namespace, "planner") == [
        {"kind": "DelegationFailed", "task": "t", "message": "m"}
    ]
