"""`mcp:<url>` tools: an agent uses a third-party MCP server's tools (the official SDK's server on
loopback), with the model played by pydantic-ai's FunctionModel."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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

from agentkube.runtime.agent import AgentRuntime
from agentkube.runtime.mcp_tools import McpSettings, McpTools, open_mcp_tools, server_prefixes
from agentkube.runtime.tools import ToolEnvironment
from tests.runtime.helpers import agent_from, runtime_for
from tests.standins.mcp_server import OVERSIZED_CHARS, mcp_server


@pytest.fixture
def server_url() -> Iterator[str]:
    with mcp_server() as url:
        yield url


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


class Script:
    """A FunctionModel that makes the given tool calls one per turn, then answers with every
    tool result it saw; it also keeps the tool names it was offered."""

    def __init__(self, *calls: tuple[str, dict[str, Any]]) -> None:
        self.calls = list(calls)
        self.offered: list[str] = []
        self.results: list[ToolReturnPart | RetryPromptPart] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.offered = [t.name for t in info.function_tools]
        last = messages[-1]
        if isinstance(last, ModelRequest):
            self.results += [
                p for p in last.parts if isinstance(p, ToolReturnPart | RetryPromptPart)
            ]
        if self.calls:
            name, args = self.calls.pop(0)
            return ModelResponse(parts=[ToolCallPart(name, args)])
        return ModelResponse(parts=[TextPart("done")])


@asynccontextmanager
async def agent_with(
    script: Script, urls: list[str], settings: McpSettings | None = None
) -> AsyncIterator[tuple[AgentRuntime, McpTools]]:
    tools = [f"mcp:{url}" for url in urls]
    agent = agent_from(json.dumps({"model": "m", "tools": tools}))
    async with open_mcp_tools(tools, settings or McpSettings()) as mcp:
        env = ToolEnvironment(toolsets=tuple(mcp.toolsets))
        yield runtime_for(agent, FunctionModel(script), tools=env), mcp


def test_each_server_gets_its_own_prefix_even_on_one_host() -> None:
    prefixes = server_prefixes(
        [
            "https://docs.example.com/mcp",
            "http://127.0.0.1:8123/mcp",
            "http://127.0.0.1:8123/other",
            "https://user:pw@Tools.Example.org:8443/mcp",
        ]
    )
    assert list(prefixes.values()) == [
        "docs_example_com",
        "mcp_127_0_0_1_8123",
        "mcp_127_0_0_1_8123_2",
        "tools_example_org_8443",
    ]


async def test_a_tool_with_arguments_is_called_and_recorded(server_url: str) -> None:
    [prefix] = server_prefixes([server_url]).values()
    script = Script((f"{prefix}_add", {"a": 2, "b": 40}), (f"{prefix}_search", {"query": "k8s"}))
    async with agent_with(script, [server_url]) as (runtime, mcp):
        outcome = await runtime.run("add, then search")
    assert mcp.unavailable == []
    assert {f"{prefix}_add", f"{prefix}_search", f"{prefix}_explode"} <= set(script.offered)
    added, found = outcome.tool_calls
    assert (added.name, added.args, added.result, added.ok) == (
        f"{prefix}_add",
        {"a": 2, "b": 40},
        "42",
        True,
    )
    assert found.ok and json.loads(found.result) == ["k8s #1", "k8s #2", "k8s #3"]
    assert [r.content for r in script.results] == [42, ["k8s #1", "k8s #2", "k8s #3"]]
    assert outcome.output == "done"


async def test_a_failing_tool_reaches_the_model_as_a_failed_result(server_url: str) -> None:
    [prefix] = server_prefixes([server_url]).values()
    script = Script(
        (f"{prefix}_explode", {"reason": "disk full"}), (f"{prefix}_add", {"a": 1, "b": 1})
    )
    async with agent_with(script, [server_url]) as (runtime, _):
        outcome = await runtime.run("try it")
    failed, after = outcome.tool_calls
    assert not failed.ok
    assert "exploded: disk full" in failed.result
    assert "exploded: disk full" in str(script.results[0].content)
    assert after.ok and after.result == "2"  # the run went on
    assert outcome.output == "done"


async def test_a_slow_tool_is_cut_off_at_its_timeout_and_the_server_stays_usable(
    server_url: str,
) -> None:
    [prefix] = server_prefixes([server_url]).values()
    script = Script((f"{prefix}_slow", {"seconds": 30}), (f"{prefix}_add", {"a": 3, "b": 4}))
    async with agent_with(script, [server_url], McpSettings(call_timeout_s=1)) as (runtime, _):
        outcome = await runtime.run("be patient")
    slow, after = outcome.tool_calls
    assert not slow.ok
    assert "did not answer within 1 s" in slow.result
    assert slow.duration_ms < 5000
    assert "did not answer within 1 s" in str(script.results[0].content)
    assert after.ok and after.result == "7"


async def test_an_oversized_result_is_cut_to_head_and_tail(server_url: str) -> None:
    [prefix] = server_prefixes([server_url]).values()
    script = Script(
        (f"{prefix}_flood", {}),
    )
    settings = McpSettings(max_result_chars=2000)
    async with agent_with(script, [server_url], settings) as (runtime, _):
        outcome = await runtime.run("flood me")
    [call] = outcome.tool_calls
    assert call.ok
    seen = str(script.results[0].content)
    assert len(seen) < 2200
    assert seen.startswith("xxx") and seen.endswith("END")
    assert f"result cut: {OVERSIZED_CHARS} chars, 2000 kept" in seen


async def test_two_servers_with_the_same_tools_do_not_collide() -> None:
    with mcp_server("first") as first, mcp_server("second") as second:
        one, two = server_prefixes([first, second]).values()
        script = Script((f"{one}_add", {"a": 1, "b": 2}), (f"{two}_add", {"a": 10, "b": 20}))
        async with agent_with(script, [first, second]) as (runtime, _):
            outcome = await runtime.run("both")
    assert one != two
    assert {f"{one}_add", f"{two}_add"} <= set(script.offered)
    assert [(c.name, c.result) for c in outcome.tool_calls] == [
        (f"{one}_add", "3"),
        (f"{two}_add", "30"),
    ]


async def test_a_server_down_at_start_is_left_out_with_one_line(server_url: str) -> None:
    down = closed_port_url()
    down_prefix, prefix = server_prefixes([down, server_url]).values()
    script = Script((f"{prefix}_add", {"a": 5, "b": 5}))
    settings = McpSettings(connect_timeout_s=3)
    async with agent_with(script, [down, server_url], settings) as (runtime, mcp):
        outcome = await runtime.run("still works")
    [line] = mcp.unavailable
    assert line.startswith(f"tool 'mcp:{down}' is unavailable: the MCP server did not answer (")
    assert line.endswith("the agent runs without its tools")
    assert "\n" not in line
    assert not [name for name in script.offered if name.startswith(f"{down_prefix}_")]
    assert f"{prefix}_add" in script.offered
    assert [(c.name, c.result) for c in outcome.tool_calls] == [(f"{prefix}_add", "10")]
