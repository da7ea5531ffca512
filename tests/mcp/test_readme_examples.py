"""What the README shows works as written: the desktop client configuration that launches
`agentkube sandbox mcp`, and examples/mcp-agent.yaml using the sandbox through MCP."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.cli_process import agentkube
from tests.mcp.helpers import http_server, structured

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]


def readme_client_config() -> dict[str, object]:
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    [config] = [json.loads(b) for b in blocks if "mcpServers" in b]
    assert isinstance(config, dict)
    return config


def run_powers(manifest: Path) -> dict[str, object]:
    """``agentkube run`` a task with one Python block; the one tool call that computed it."""
    result = agentkube(
        "run", str(manifest), "--json", "--task", "Powers:\n```python\nprint(2**10)\n```"
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["output"] == "1024"
    [call] = outcome["tool_calls"]
    assert call["ok"]
    return dict(call)


async def test_the_readme_desktop_client_configuration_runs_code() -> None:
    [(name, entry)] = readme_client_config()["mcpServers"].items()  # type: ignore[attr-defined]
    assert name == "agentkube-sandbox"
    assert entry["command"] == "/path/to/agentkube/.venv/bin/agentkube"
    # This checkout's console script stands in for /path/to/agentkube/.venv/bin/agentkube.
    command = str(Path(sys.executable).parent / "agentkube")
    async with Client(StdioServerParameters(command=command, args=entry["args"])) as client:
        result = structured(await client.call_tool("run_python", {"code": "print(2**10)"}))
    assert result["stdout"] == "1024\n"


def test_the_example_agent_runs_its_code_through_the_sandbox_mcp_server(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "mcp-agent.yaml").read_text()
    assert "mcp:http://127.0.0.1:8765/mcp" in example
    with http_server() as url:
        manifest = tmp_path / "mcp-agent.yaml"
        manifest.write_text(example.replace("http://127.0.0.1:8765/mcp", url))
        call = run_powers(manifest)
    assert str(call["name"]).endswith("_run_python")


def test_the_mcpservers_example_runs_its_code_through_a_stdio_mcpserver(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "mcp-servers.yaml").read_text()
    assert "command: agentkube\n" in example
    # This checkout's console script stands in for `agentkube` on PATH.
    manifest = tmp_path / "mcp-servers.yaml"
    command = str(Path(sys.executable).parent / "agentkube")
    manifest.write_text(example.replace("command: agentkube\n", f"command: {command}\n"))
    assert run_powers(manifest)["name"] == "sandbox_run_python"
