"""`mcp:<url>` tools end to end: the real OpenAI client path (the stand-in model server) and the
real command line, against a third-party MCP server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.mcp_tools import server_prefixes
from tests.cli_process import agentkube
from tests.mcp.test_mcp_tools import closed_port_url
from tests.runtime.helpers import agent_from
from tests.standins.mcp_server import mcp_server
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


@pytest.fixture
def server_url() -> Iterator[str]:
    with mcp_server() as url:
        yield url


async def test_the_model_is_offered_the_servers_tools_and_gets_their_results(
    model_server: tuple[ScriptedModel, str], server_url: str
) -> None:
    script, base_url = model_server
    [prefix] = server_prefixes([server_url]).values()
    script.replies = [
        Reply(tool_calls=[ToolCall(f"{prefix}_search", {"query": "pods", "limit": 2})]),
        Reply(tool_calls=[ToolCall(f"{prefix}_explode", {"reason": "no quota"})]),
        Reply(text="Found: pods #1, pods #2."),
    ]
    agent = agent_from(json.dumps({"model": "standin-model", "tools": [f"mcp:{server_url}"]}))
    async with open_runtime(agent, [], RuntimeSettings(environ={}, base_url=base_url)) as runtime:
        outcome = await runtime.run("Find two pods")

    assert outcome.output == "Found: pods #1, pods #2."
    first, second, third = script.requests
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {f"{prefix}_add", f"{prefix}_search", f"{prefix}_slow"} <= offered
    search_schema = next(
        t["function"]["parameters"]
        for t in first["tools"]
        if t["function"]["name"].endswith("_search")
    )
    assert set(search_schema["properties"]) == {"query", "limit"}
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert "pods #2" in json.dumps(tool_messages)
    failure = [m for m in third["messages"] if m["role"] == "tool"][-1]
    assert "exploded: no quota" in json.dumps(failure)
    searched, exploded = outcome.tool_calls
    assert searched.ok and not exploded.ok


def test_the_command_line_warns_in_one_line_and_runs_the_other_tools(
    model_server: tuple[ScriptedModel, str], server_url: str, tmp_path: Path
) -> None:
    script, base_url = model_server
    down = closed_port_url()
    prefix = server_prefixes([down, server_url])[server_url]
    script.replies = [
        Reply(tool_calls=[ToolCall(f"{prefix}_add", {"a": 20, "b": 22})]),
        Reply(text="The sum is 42."),
    ]
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: mcp-user}\n"
        f"spec: {{model: standin-model, memory: none, tools: ['mcp:{down}', 'mcp:{server_url}']}}\n"
    )
    result = agentkube(
        "run", str(manifest), "--task", "add 20 and 22", "--base-url", base_url, "--json"
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["output"] == "The sum is 42."
    assert [(c["name"], c["result"]) for c in outcome["tool_calls"]] == [(f"{prefix}_add", "42")]
    warnings = [line for line in result.stderr.splitlines() if f"mcp:{down}" in line]
    assert warnings == [
        next(
            line
            for line in warnings
            if line.startswith(f"warning: tool 'mcp:{down}' is unavailable")
        )
    ]
    assert result.stderr.count("\n") == 1, result.stderr
