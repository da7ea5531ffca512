"""Every metric docs/observability.md lists is on its component's /metrics, with the documented
labels, after a scripted workload on the real component (uvicorn on loopback)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.gateway.app import create_app as create_gateway
from agentkube.gateway.auth import StaticTokens
from agentkube.runtime.a2a import A2AMount, A2ATeam
from agentkube.runtime.agent import AgentRuntime
from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.handoff import DurableTasks, open_durable
from agentkube.runtime.server import create_app as create_agent_app
from agentkube.runtime.tools import ToolEnvironment
from agentkube.sandbox.local import LocalSandbox
from tests.memory.servers import free_port
from tests.runtime.helpers import agent_from, runtime_for
from tests.sidecar.conftest import RunningProxy
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall
from tests.standins.serving import serve
from tests.teams.helpers import tool_returns
from tests.telemetry.documented import documented_metrics, missing

pytestmark = pytest.mark.sandbox


def test_the_table_documents_every_component() -> None:
    components = {m.component for m in documented_metrics()}
    assert components == {"agent", "rag-proxy", "gateway", "operator"}
    assert len(documented_metrics()) >= 25


def _wait_done(client: httpx.Client, task_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (view := client.get(f"/v1/tasks/{task_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, view
        time.sleep(0.05)  # polling the task, as a client does
    return dict(view)


def test_the_agent_serves_its_documented_metrics(
    tmp_path: Path, model: tuple[ScriptedModel, str]
) -> None:
    script, base_url = model
    script.replies = [
        Reply(tool_calls=[ToolCall("python-interpreter", {"code": "print(6 * 7)"})]),
        Reply(text="42"),
    ]
    agent = agent_from("{model: standin-model, tools: [python-interpreter]}")

    def factory() -> AbstractAsyncContextManager[AgentRuntime]:
        return open_runtime(agent, [], RuntimeSettings(environ={}, base_url=base_url))

    def durable(rt: AgentRuntime) -> AbstractAsyncContextManager[DurableTasks]:
        return open_durable(rt, redis_url=None, data_dir=tmp_path, claim_idle_s=30)

    with (
        serve(create_agent_app(factory, durable=durable)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        task = client.post("/v1/tasks", json={"task": "what is 6 * 7?"}).json()
        assert _wait_done(client, task["id"])["status"] == "succeeded"
        page = client.get("/metrics").text
    assert missing(page, "agent") == []
    assert 'agentkube_tool_calls_total{ok="true",tool="python-interpreter"} 1.0' in page
    assert 'agentkube_tasks_total{outcome="succeeded"} 1.0' in page
    label = f'model="standin-model @ {base_url}"'
    assert f"agentkube_model_requests_total{{{label}}} 2.0" in page
    assert f"agentkube_model_request_seconds_count{{{label}}} 2.0" in page
    assert f'agentkube_model_tokens_total{{kind="output",{label}}} 10.0' in page


def _served(runtime: AgentRuntime, **options: Any) -> FastAPI:
    @asynccontextmanager
    async def factory() -> AsyncIterator[AgentRuntime]:
        yield runtime

    return create_agent_app(factory, **options)


def _planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if not tool_returns(messages):
        return ModelResponse(parts=[ToolCallPart("agent_coder", {"task": "add 2 and 3"})])
    return ModelResponse(parts=[TextPart("5")])


def _coder(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("2 + 3 = 5")])


def test_a_planner_counts_its_own_model_requests_not_its_executors() -> None:
    """The subtask's requests are charged to the planner's budget, yet made by the executor's
    model: counted on the executor's page only (once, under its model)."""
    coder_agent = agent_from("{model: m, role: executor}", name="coder")
    coder = runtime_for(coder_agent, FunctionModel(_coder))
    port = free_port()
    a2a = A2AMount(agent=coder_agent, public_url=f"http://127.0.0.1:{port}")
    with serve(_served(coder, a2a=a2a), port=port) as coder_url:
        planner = runtime_for(
            agent_from("{model: m, role: planner, tools: ['agent:coder']}", name="planner"),
            FunctionModel(_planner),
            tools=ToolEnvironment(delegator=A2ATeam({"coder": coder_url})),
        )
        with serve(_served(planner)) as url, httpx.Client(base_url=url, timeout=30) as client:
            task = client.post("/v1/tasks", json={"task": "what is 2 + 3?"}).json()
            view = _wait_done(client, task["id"])
            planner_page = client.get("/metrics").text
        coder_page = httpx.get(f"{coder_url}/metrics", timeout=30).text
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert isinstance(result, dict) and result["model_requests"] == 3  # the budget's view
    for page, own in ((planner_page, 2), (coder_page, 1)):
        assert f'agentkube_model_requests_total{{model="scripted"}} {own}.0' in page
        assert f'agentkube_model_request_seconds_count{{model="scripted"}} {own}.0' in page


def test_the_rag_proxy_serves_its_documented_metrics(proxy: RunningProxy) -> None:
    proxy.script.replies = [Reply(text="Orca")]
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "operator nickname?"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        page = client.get("/metrics").text
    assert missing(page, "rag-proxy") == []


async def test_the_gateway_serves_its_documented_metrics() -> None:
    backend = LocalSandbox(pool_size=1)
    app = create_gateway(backend, StaticTokens({"t0ken": "tester"}))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        ran = client.post(
            "/v1/executions",
            json={"code": "print(1)"},
            headers={"authorization": "Bearer t0ken"},
        )
        assert ran.status_code == 200 and ran.json()["exit_code"] == 0
        assert client.post("/v1/executions", json={"code": "print(1)"}).status_code == 401
        page = client.get("/metrics").text
    assert missing(page, "gateway") == []
    assert 'agentkube_gateway_executions_total{backend="local",outcome="ok"} 1.0' in page
    assert 'agentkube_gateway_refusals_total{reason="unauthenticated"} 1.0' in page
