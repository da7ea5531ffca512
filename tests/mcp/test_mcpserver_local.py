"""`mcp:<name>` on one machine and in an agent pod: the file's MCPServer (a stdio command, or a
url), or the servers the operator names in AGENTKUBE_MCP_SERVERS, through the real OpenAI client
path (the stand-in model server) and the real command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkube.api.mcp import ServerEndpoint, encode_servers
from agentkube.errors import UserError
from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.mcp_servers import named_servers
from tests.cli_process import agent_service, agentkube, finished_task
from tests.runtime.helpers import agent_from
from tests.standins.mcp_server import create_server
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


class HeaderRecorder:
    """The stand-in MCP server, keeping the headers of every request it gets."""

    def __init__(self) -> None:
        self.app = create_server().streamable_http_app(streamable_http_path="/mcp")
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


def stdio_server(name: str) -> str:
    """An MCPServer document running the stand-in's tools as a stdio subprocess."""
    spec = {
        "command": sys.executable,
        "args": ["-m", "tests.standins.mcp_server"],
        "env": [{"name": "PYTHONPATH", "value": str(REPO)}],
    }
    doc = {"apiVersion": "ai.openvn/v1", "kind": "MCPServer", "metadata": {"name": name}}
    return json.dumps({**doc, "spec": spec})


def agent_doc(tools: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {"name": "local-tools"},
            "spec": {"model": "standin-model", "memory": "none", "tools": tools},
        }
    )


def test_agentkube_run_uses_a_stdio_mcpserver_of_the_same_file(
    model_server: tuple[ScriptedModel, str], tmp_path: Path
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("calc_add", {"a": 20, "b": 22})]),
        Reply(tool_calls=[ToolCall("calc_explode", {"reason": "on purpose"})]),
        Reply(text="The sum is 42."),
    ]
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(f"{agent_doc(['mcp:calc'])}\n---\n{stdio_server('calc')}\n")
    result = agentkube(
        "run", str(manifest), "--task", "add 20 and 22", "--base-url", base_url, "--json"
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["output"] == "The sum is 42."
    added, exploded = outcome["tool_calls"]
    assert (added["name"], added["result"], added["ok"]) == ("calc_add", "42", True)
    assert exploded["ok"] is False and "exploded: on purpose" in exploded["result"]
    offered = {t["function"]["name"] for t in script.requests[0]["tools"]}
    assert {"calc_add", "calc_search", "calc_slow", "calc_flood"} <= offered


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("", "spec.tools 'mcp:calc' names no MCPServer of this file; add an MCPServer named calc"),
        (
            "---\napiVersion: ai.openvn/v1\nkind: MCPServer\nmetadata: {name: calc}\n"
            "spec: {image: 'ghcr.io/example/mcp:1', port: 8000}\n",
            "MCPServer calc: spec.image runs only in a cluster",
        ),
        (
            "---\napiVersion: ai.openvn/v1\nkind: MCPServer\nmetadata: {name: calc}\n"
            "spec: {url: 'http://127.0.0.1:1/mcp', "
            "headersFrom: {secretName: s, headers: {A: k}}}\n",
            "MCPServer calc: spec.headersFrom reads Secret s, which exists only in a cluster",
        ),
    ],
)
def test_what_cannot_run_on_one_machine_is_refused_in_one_line(
    tmp_path: Path, extra: str, says: str
) -> None:
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(f"{agent_doc(['mcp:calc'])}\n{extra}")
    result = agentkube("run", str(manifest), "--task", "hi", "--model", "offline")
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


async def test_in_a_pod_the_operator_named_servers_are_used_with_their_header_secrets(
    model_server: tuple[ScriptedModel, str],
) -> None:
    script, base_url = model_server
    recorder = HeaderRecorder()
    with serve(recorder) as url:
        servers = {
            "docs": ServerEndpoint(
                url=f"{url}/mcp", header_env={"X-Api-Key": "AGENTKUBE_MCP_HEADER_0"}
            )
        }
        environ = {
            "AGENTKUBE_MCP_SERVERS": encode_servers(servers),
            "AGENTKUBE_MCP_HEADER_0": "k-123",
        }
        script.replies = [
            Reply(tool_calls=[ToolCall("docs_search", {"query": "pods", "limit": 1})]),
            Reply(text="Found pods #1."),
        ]
        agent = agent_from(
            json.dumps({"model": "standin-model", "tools": ["mcp:docs", "mcp:gone"]})
        )
        settings = RuntimeSettings(environ=environ, base_url=base_url)
        async with open_runtime(agent, [], settings) as runtime:
            outcome = await runtime.run("Find pods")
    assert outcome.output == "Found pods #1."
    assert [c.name for c in outcome.tool_calls] == ["docs_search"]
    assert recorder.seen and all(h.get("x-api-key") == "k-123" for h in recorder.seen)


def test_a_name_the_operator_did_not_resolve_is_left_out_with_one_line() -> None:
    agent = agent_from(json.dumps({"model": "m", "tools": ["mcp:gone"]}))
    found = named_servers(agent, {}, {"AGENTKUBE_MCP_SERVERS": "{}"})
    assert found.servers == {}
    (line,) = found.unavailable
    assert line.startswith("tool 'mcp:gone' is unavailable: the operator found no MCPServer gone")
    with pytest.raises(UserError, match=r"^AGENTKUBE_MCP_SERVERS: not JSON"):
        named_servers(agent, {}, {"AGENTKUBE_MCP_SERVERS": "{"})


def test_agent_serve_connects_its_mcp_name_tools_to_a_stdio_mcpserver(
    model_server: tuple[ScriptedModel, str], tmp_path: Path
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("calc_search", {"query": "pods", "limit": 2})]),
        Reply(text="Found pods #1 and pods #2."),
    ]
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(f"{agent_doc(['mcp:calc'])}\n---\n{stdio_server('calc')}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OPENAI_"))}
    with agent_service(str(manifest), "--base-url", base_url, env=env) as url:
        view = finished_task(url, "find pods")
    assert view["status"] == "succeeded", view
    assert view["result"]["output"] == "Found pods #1 and pods #2."
    [call] = view["result"]["tool_calls"]
    assert (call["name"], call["ok"]) == ("calc_search", True)
    assert "pods #2" in call["result"]
