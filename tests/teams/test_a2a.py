"""A2A on the agent's HTTP API, driven by the official a2a-sdk client; delegation over A2A."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_artifact_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.memory.history import InMemoryHistory
from agentkube.runtime.a2a import A2AMount, A2ATeam
from agentkube.runtime.agent import AgentRuntime, TaskBudget
from agentkube.runtime.delegation import Subtask
from agentkube.runtime.errors import DelegationFailed
from agentkube.runtime.server import create_app
from agentkube.runtime.tools import ToolEnvironment
from tests.memory.servers import free_port
from tests.runtime.helpers import agent_from, prompts, runtime_for
from tests.standins.serving import serve
from tests.teams.helpers import tool_returns

CODER = "{model: m, role: executor, systemPrompt: 'You compute exact answers in Python.'}"


async def echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    text = str(messages[-1].parts[-1].content)  # type: ignore[union-attr]
    if "slowly" in text:
        await asyncio.sleep(30)
    return ModelResponse(parts=[TextPart(f"coder says: {text}")])


def _factory(runtime: AgentRuntime):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def factory() -> AsyncIterator[AgentRuntime]:
        yield runtime

    return factory


@pytest.fixture
def coder_url() -> Iterator[str]:
    agent = agent_from(CODER, name="coder")
    runtime = runtime_for(agent, FunctionModel(echo))
    port = free_port()  # the card names the URL the agent is reached by
    public = f"http://127.0.0.1:{port}"
    app = create_app(_factory(runtime), a2a=A2AMount(agent=agent, public_url=public))
    with serve(app, port=port) as url:
        yield url


def _message(text: str, context_id: str = "") -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=f"m-{text[:8]}",
            parts=[Part(text=text)],
            context_id=context_id,
        )
    )


async def test_the_agent_card_is_served_at_the_well_known_path(coder_url: str) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{coder_url}/.well-known/agent-card.json")).json()
    assert card["name"] == "coder"
    assert card["description"] == "You compute exact answers in Python."
    assert card["capabilities"]["streaming"] is True
    (interface,) = card["supportedInterfaces"]
    assert interface["protocolBinding"] == "JSONRPC" and interface["url"].endswith("/a2a")
    assert card["skills"][0]["id"] == "coder"


async def test_the_official_client_sends_a_task_and_reads_it_back(coder_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await create_client(
            coder_url, client_config=ClientConfig(streaming=False, httpx_client=http)
        )
        responses = [r async for r in client.send_message(_message("add 2 and 3"))]
        (response,) = responses
        task = response.task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        answer, outcome = task.artifacts
        assert get_artifact_text(answer) == "coder says: add 2 and 3"
        assert json.loads(get_artifact_text(outcome))["agent"] == "coder"
        again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(again.artifacts[0]) == "coder says: add 2 and 3"
        await client.close()


async def test_the_official_client_streams_a_task_to_its_end(coder_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await create_client(
            coder_url, client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        states, texts = [], []
        async for event in client.send_message(_message("stream it")):
            if event.HasField("status_update"):
                states.append(event.status_update.status.state)
            if event.HasField("artifact_update"):
                texts.append(get_artifact_text(event.artifact_update.artifact))
        assert states[0] == TaskState.TASK_STATE_WORKING
        assert states[-1] == TaskState.TASK_STATE_COMPLETED
        assert "coder says: stream it" in texts
        await client.close()


async def test_the_official_client_cancels_a_running_task(coder_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await create_client(
            coder_url, client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        stream: Any = client.send_message(_message("think slowly"))
        task_id = ""
        async for event in stream:
            if event.HasField("status_update"):
                task_id = event.status_update.task_id
                break
            if event.HasField("task"):
                task_id = event.task.id
                break
        assert task_id
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        await stream.aclose()
        await client.close()


async def test_a_planner_delegates_to_an_agent_over_a2a(coder_url: str) -> None:
    def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        from pydantic_ai.messages import ToolCallPart

        done = tool_returns(messages)
        if not done:
            return ModelResponse(parts=[ToolCallPart("agent_coder", {"task": "add 2 and 3"})])
        return ModelResponse(parts=[TextPart(json.dumps(done[0].content))])

    team = A2ATeam({"coder": coder_url}, descriptions={"coder": "computes"})
    runtime = runtime_for(
        agent_from("{model: m, role: planner, tools: ['agent:coder']}", name="planner"),
        FunctionModel(planner),
        tools=ToolEnvironment(delegator=team),
    )
    outcome = await runtime.run("what is 2 + 3?")
    (call,) = outcome.tool_calls
    assert call.ok, call.result
    assert json.loads(outcome.output)["output"] == "coder says: add 2 and 3"
    assert call.delegated is not None and call.delegated["agent"] == "coder"


async def test_a_subtask_sent_over_a2a_runs_within_the_budget_it_carries(coder_url: str) -> None:
    team = A2ATeam({"coder": coder_url})

    def subtask(requests: int) -> Subtask:
        budget = TaskBudget(max_model_requests=requests, timeout_s=20)
        return Subtask(target="coder", task="echo this", chain=("planner",), budget=budget)

    outcome = await team.delegate(subtask(1), lambda _event: None)
    assert outcome.output == "coder says: echo this"
    assert outcome.model_requests == 1
    with pytest.raises(DelegationFailed, match="limit of 0 model requests"):
        await team.delegate(subtask(0), lambda _event: None)


async def recalls(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart(" | ".join(prompts(messages)))])


async def test_tasks_of_one_a2a_context_share_a_history_and_other_contexts_do_not() -> None:
    """The A2A contextId is the conversation: a client continues its own, and another
    caller's tasks neither see that history nor wait for its turn."""
    agent = agent_from(CODER, name="coder")
    runtime = runtime_for(agent, FunctionModel(recalls), history=InMemoryHistory())
    port = free_port()
    app = create_app(
        _factory(runtime), a2a=A2AMount(agent=agent, public_url=f"http://127.0.0.1:{port}")
    )
    with serve(app, port=port) as url:
        async with httpx.AsyncClient(timeout=30) as http:
            client = await create_client(
                url, client_config=ClientConfig(streaming=False, httpx_client=http)
            )

            async def answer(text: str, context: str) -> str:
                (response,) = [r async for r in client.send_message(_message(text, context))]
                return get_artifact_text(response.task.artifacts[0])

            assert await answer("first", "ctx-a") == "first"
            assert await answer("second", "ctx-a") == "first | second"
            assert await answer("other", "ctx-b") == "other"
            await client.close()
