"""The agent loop (pydantic-ai) with scripted models: memory, tool recording, tool refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.memory.history import SqliteHistory
from agentkube.runtime.errors import ToolConfigError
from agentkube.runtime.events import RunEvent
from agentkube.runtime.tools import ToolEnvironment, build_tools
from tests.runtime.helpers import agent_from, echo_prompts, runtime_for


async def test_persistent_memory_carries_history_across_runtimes(tmp_path: Path) -> None:
    agent = agent_from("{model: m, memory: persistent}")
    first = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    assert (await first.run("my name is Ada")).output == "my name is Ada"
    # A new runtime (a new process, a restarted pod) reads the same store.
    second = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    outcome = await second.run("what is my name?")
    assert outcome.output == "my name is Ada | what is my name?"
    assert SqliteHistory(tmp_path / "history.sqlite3").run_count("default/tester") == 2


async def test_ephemeral_memory_lives_only_in_the_process(tmp_path: Path) -> None:
    agent = agent_from("{model: m, memory: ephemeral}")
    runtime = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    await runtime.run("one")
    assert (await runtime.run("two")).output == "one | two"
    fresh = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    assert (await fresh.run("three")).output == "three"
    assert not (tmp_path / "history.sqlite3").exists()


async def test_memory_none_keeps_nothing(tmp_path: Path) -> None:
    agent = agent_from("{model: m, memory: none}")
    runtime = runtime_for(agent, FunctionModel(echo_prompts), data_dir=tmp_path)
    await runtime.run("one")
    assert (await runtime.run("two")).output == "two"


async def test_histories_of_different_agents_do_not_mix(tmp_path: Path) -> None:
    alice = agent_from("{model: m, memory: persistent}", name="alice")
    bob = agent_from("{model: m, memory: persistent}", name="bob")
    await runtime_for(alice, FunctionModel(echo_prompts), data_dir=tmp_path).run("alice's secret")
    outcome = await runtime_for(bob, FunctionModel(echo_prompts), data_dir=tmp_path).run("hi")
    assert outcome.output == "hi"


def browse_then_answer(url: str):  # type: ignore[no-untyped-def]
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if isinstance(last, ModelRequest) and any(
            isinstance(p, UserPromptPart) for p in last.parts
        ):
            return ModelResponse(parts=[ToolCallPart("web-browser", {"url": url})])
        seen = " ".join(str(getattr(p, "content", "")) for p in last.parts)
        return ModelResponse(parts=[TextPart("refused" if "blocked" in seen else seen)])

    return respond


async def test_web_browser_refuses_loopback_by_default_and_the_call_is_recorded() -> None:
    agent = agent_from("{model: m, tools: [web-browser]}")
    events: list[RunEvent] = []
    runtime = runtime_for(agent, FunctionModel(browse_then_answer("http://127.0.0.1:1/secret")))
    outcome = await runtime.run("read it", emit=events.append)
    assert outcome.output == "refused"
    [call] = outcome.tool_calls
    assert call.name == "web-browser"
    assert call.args == {"url": "http://127.0.0.1:1/secret"}
    assert not call.ok
    assert "private/internal IP address (127.0.0.1) is blocked" in call.result
    kinds = [e.kind for e in events]
    assert kinds.index("tool.started") < kinds.index("tool.finished")


@pytest.mark.parametrize("tool", ["agent:planner", "mcp:ftp://tools.example/mcp"])
def test_tools_this_release_cannot_provide_are_refused_by_name(tool: str) -> None:
    with pytest.raises(ToolConfigError, match=tool.split(":")[0]):
        build_tools([tool], ToolEnvironment())


def test_python_interpreter_without_a_sandbox_is_refused() -> None:
    with pytest.raises(ToolConfigError, match="needs a sandbox"):
        build_tools(["python-interpreter"], ToolEnvironment(sandbox=None))
