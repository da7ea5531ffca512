"""What one task may do and see: its conversation, its budget, and sandbox failures as tool
results the model can react to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.api.errors import ManifestError
from agentkube.api.teams import load_team
from agentkube.memory.history import InMemoryHistory
from agentkube.runtime.agent import TaskBudget
from agentkube.runtime.errors import TaskLimitReached
from agentkube.runtime.tools import PYTHON_INTERPRETER, ToolEnvironment, build_tools
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.errors import SandboxBusy, SandboxFailure, SandboxRequestError
from tests.runtime.helpers import agent_from, echo_prompts, runtime_for


async def test_conversations_keep_separate_histories(tmp_path: Path) -> None:
    agent = agent_from("{model: m, memory: persistent}")
    runtime = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    await runtime.run("I am Ada", conversation="a")
    await runtime.run("I am Bob", conversation="b")
    assert (await runtime.run("who?", conversation="a")).output == "I am Ada | who?"
    outcome = await runtime.run("who?", conversation="b")
    assert outcome.output == "I am Bob | who?"
    assert outcome.conversation == "b"
    # The default conversation is the agent's history from before conversations existed.
    assert (await runtime.run("hello")).output == "hello"
    assert runtime.history_key("default") == "default/tester"
    assert runtime.history_key("a") == "default/tester/a"


async def test_runs_of_one_conversation_take_turns() -> None:
    running = 0
    most = 0

    async def slow_echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return echo_prompts(messages, info)

    agent = agent_from("{model: m, memory: ephemeral}")
    runtime = runtime_for(agent, FunctionModel(slow_echo), history=InMemoryHistory())
    first, second = await asyncio.gather(
        runtime.run("one", conversation="c"), runtime.run("two", conversation="c")
    )
    assert most == 1  # never two model calls of one conversation at once
    # Whichever ran second saw the first's turn: nothing was appended concurrently.
    assert sorted([first.output, second.output], key=len)[1] in ("one | two", "two | one")
    # Different conversations do run side by side.
    most = 0
    await asyncio.gather(runtime.run("x", conversation="d"), runtime.run("y", conversation="e"))
    assert most == 2
    assert runtime._turns == {}  # no lock is kept for a finished conversation


def always_calls_a_tool(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(PYTHON_INTERPRETER, {"code": "print(1)"})])


class CountingSandbox:
    """A Sandbox that answers at once, or raises the errors it is given, in order."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def start(self) -> None:
        return None

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ExecutionResult(exit_code=0, stdout="1\n", stderr="", duration_ms=1.0)

    async def aclose(self) -> None:
        return None


async def test_a_task_stops_at_its_model_request_limit() -> None:
    agent = agent_from("{model: m, tools: [python-interpreter]}")
    sandbox = CountingSandbox()
    runtime = runtime_for(
        agent,
        FunctionModel(always_calls_a_tool),
        tools=ToolEnvironment(sandbox=sandbox),
        budget=TaskBudget(max_model_requests=3),
    )
    with pytest.raises(TaskLimitReached, match=r"limit of 3 model requests.*--max-requests"):
        await runtime.run("loop forever")
    assert sandbox.calls == 3


async def test_a_task_past_its_timeout_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def hangs(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not reached")

    runtime = runtime_for(
        agent_from("{model: m}"), FunctionModel(hangs), budget=TaskBudget(timeout_s=0.2)
    )
    with pytest.raises(TaskLimitReached, match=r"past its 0.2 s timeout.*--task-timeout"):
        await runtime.run("wait")
    assert cancelled.is_set()


def _tool_returns(messages: list[ModelMessage]) -> list[Any]:
    return [
        p
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, (ToolReturnPart, RetryPromptPart))
    ]


def call_once_then_report(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Calls the tool once, then answers with what the tool returned."""
    returns = _tool_returns(messages)
    if not returns:
        return always_calls_a_tool(messages, info)
    last = returns[-1]
    content = last.content if isinstance(last, ToolReturnPart) else f"retry: {last.content}"
    return ModelResponse(parts=[TextPart(json.dumps(content, default=str))])


async def test_a_busy_sandbox_is_waited_for_as_long_as_it_asks() -> None:
    sandbox = CountingSandbox(SandboxBusy("quota", retry_after_s=0.01))
    runtime = runtime_for(
        agent_from("{model: m, tools: [python-interpreter]}"),
        FunctionModel(call_once_then_report),
        tools=ToolEnvironment(sandbox=sandbox),
    )
    outcome = await runtime.run("go")
    assert sandbox.calls == 2
    assert json.loads(outcome.output)["stdout"] == "1\n"


async def test_sandbox_failures_reach_the_model_as_tool_results() -> None:
    busy = [SandboxBusy("agent quota used up", retry_after_s=0.01) for _ in range(4)]
    for error, expected in (
        (busy, "agent quota used up"),
        ([SandboxFailure("gateway 502")], "502"),
    ):
        sandbox = CountingSandbox(*error)
        runtime = runtime_for(
            agent_from("{model: m, tools: [python-interpreter]}"),
            FunctionModel(call_once_then_report),
            tools=ToolEnvironment(sandbox=sandbox),
        )
        outcome = await runtime.run("go")  # the run goes on: the model got an error to react to
        reported = json.loads(outcome.output)
        assert expected in reported["error"]
        assert outcome.tool_calls[0].ok is False
        if error is busy:
            assert reported["retry_after_s"] == 0.01
            assert sandbox.calls == 4


async def test_an_invalid_request_is_the_models_to_fix() -> None:
    sandbox = CountingSandbox(SandboxRequestError("code is 2 MiB, the limit is 1 MiB"))
    runtime = runtime_for(
        agent_from("{model: m, tools: [python-interpreter]}"),
        FunctionModel(call_once_then_report),
        tools=ToolEnvironment(sandbox=sandbox),
    )
    outcome = await runtime.run("go")
    assert "the sandbox refused the code: code is 2 MiB" in outcome.output
    assert outcome.tool_calls[0].ok is False


def test_the_tool_description_states_the_real_limits() -> None:
    limits = Limits(cpu=1.5, memory_bytes=256 * 2**20, timeout_s=45)
    (tool,) = build_tools(
        [PYTHON_INTERPRETER], ToolEnvironment(sandbox=CountingSandbox(), limits=limits)
    )
    assert tool.description is not None
    assert "1.5 CPU, 256 MiB of memory and a 45 s timeout" in tool.description


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("{model: m, tools: ['mcp:ftp://tools.example/mcp']}", "'mcp:ftp://tools.example/mcp'"),
    ],
)
def test_what_this_release_cannot_run_is_refused_at_load(
    tmp_path: Path, spec: str, named: str
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(f"apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {{name: a}}\nspec: {spec}\n")
    with pytest.raises(ManifestError, match="cannot run") as caught:
        load_team(path)
    assert named in str(caught.value)
    assert str(caught.value).startswith(f"{path}: Agent a: ")
