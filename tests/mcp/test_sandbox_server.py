"""The official MCP SDK's client against `agentkube sandbox mcp`, over stdio and HTTP.

Each result must be what `agentkube sandbox exec --json` prints for the same code, and hostile
code must be contained as in the abuse suite (tests/sandbox/test_abuse.py).
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest
from mcp import Client

from agentkube.sandbox.contract import ExecutionResult
from tests.cli_process import agentkube
from tests.mcp.helpers import http_server, stdio_params, structured, text_of

pytestmark = pytest.mark.sandbox


def sandbox_client() -> Client:
    """A client that launches the server (its session must open and close in one task, so each
    test enters it itself rather than through a fixture)."""
    return Client(stdio_params("--timeout", "10"))


async def test_the_server_offers_run_python_and_run_bash_with_their_limits() -> None:
    async with sandbox_client() as client:
        listing = await client.list_tools()
        tools = {tool.name: tool for tool in listing.tools}
        assert set(tools) == {"run_python", "run_bash"}
        schema = tools["run_python"].input_schema
        assert schema["required"] == ["code"]
        assert set(schema["properties"]) == {"code", "timeout_seconds"}
        assert "no network" in (tools["run_python"].description or "")
        assert "10 s timeout" in (tools["run_bash"].description or "")


async def test_run_python_returns_what_sandbox_exec_json_prints() -> None:
    async with sandbox_client() as client:
        code = "import sys\nprint(6 * 7)\nprint('oops', file=sys.stderr)\nsys.exit(3)\n"
        result = structured(await client.call_tool("run_python", {"code": code}))
        exec_json = json.loads(agentkube("sandbox", "exec", "--json", "-", stdin=code).stdout)
        for key in ("exit_code", "stdout", "stderr", "killed_reason", "truncated", "files"):
            assert result[key] == exec_json[key], key
        assert result["exit_code"] == 3
        assert result["stdout"] == "42\n"
        assert set(result) == set(ExecutionResult.model_fields)


async def test_run_bash_runs_a_script() -> None:
    async with sandbox_client() as client:
        result = structured(
            await client.call_tool("run_bash", {"code": "echo $((2 + 3)); echo err >&2"})
        )
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (0, "5\n", "err\n")


async def test_code_past_its_timeout_is_killed_and_reported() -> None:
    async with sandbox_client() as client:
        result = structured(
            await client.call_tool(
                "run_python", {"code": "import time\ntime.sleep(30)", "timeout_seconds": 1}
            )
        )
        assert result["killed_reason"] == "timeout"
        assert result["exit_code"] is None
        assert result["duration_ms"] < 8000


async def test_a_timeout_above_the_servers_is_refused_as_a_tool_error() -> None:
    async with sandbox_client() as client:
        result = await client.call_tool("run_python", {"code": "print(1)", "timeout_seconds": 60})
        assert result.is_error
        assert "above this server's limit of 10 s" in text_of(result)
        empty = await client.call_tool("run_bash", {"code": "   "})
        assert empty.is_error
        assert "no code to run" in text_of(empty)


async def test_the_host_loopback_is_unreachable_from_a_tool_call() -> None:
    async with sandbox_client() as client:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = textwrap.dedent(
            f"""
            import socket
            for target in (('127.0.0.1', {port}), ('1.1.1.1', 443)):
                try:
                    socket.create_connection(target, timeout=2)
                    print('reached', target)
                except OSError as e:
                    print('unreachable', type(e).__name__)
            print(sorted(name for _, name in socket.if_nameindex()))
            """
        )
        try:
            result = structured(await client.call_tool("run_python", {"code": code}))
            assert "reached" not in result["stdout"]
            assert result["stdout"].count("unreachable") == 2
            assert result["stdout"].strip().endswith("['lo']")
            with pytest.raises(BlockingIOError):
                listener.accept()  # nothing reached the host's listener
        finally:
            listener.close()


async def test_host_files_and_the_servers_environment_are_invisible(tmp_path: Path) -> None:
    marker = tmp_path / "host-secret.txt"
    marker.write_text("s3cret")
    params = stdio_params()
    params.env = {**(params.env or {}), "AGENTKUBE_TEST_SECRET": "hunter2"}
    paths = [str(marker), "/etc/shadow", "/root", "/home", "/work", str(Path.cwd())]
    code = textwrap.dedent(
        f"""
        import json, os
        print(json.dumps({{
            'seen': [p for p in {paths!r} if os.path.exists(p)],
            'env': dict(os.environ),
            'pid1_env': open('/proc/1/environ', 'rb').read().decode(),
        }}))
        """
    )
    async with Client(params) as client:
        result = structured(await client.call_tool("run_python", {"code": code}))
    assert result["exit_code"] == 0, result["stderr"]
    report = json.loads(result["stdout"])
    assert report["seen"] == []
    assert "hunter2" not in result["stdout"]
    assert "AGENTKUBE_TEST_SECRET" not in report["env"]
    assert marker.read_text() == "s3cret"


async def test_a_fork_bomb_is_stopped_and_the_server_keeps_serving() -> None:
    async with sandbox_client() as client:
        bomb = structured(
            await client.call_tool(
                "run_bash", {"code": ":(){ :|:& };:\nsleep 15", "timeout_seconds": 10}
            )
        )
        assert bomb["killed_reason"] == "pids"
        after = structured(await client.call_tool("run_python", {"code": "print('still here')"}))
        assert after["stdout"] == "still here\n"


async def test_over_streamable_http_the_same_tools_run_code() -> None:
    with http_server("--timeout", "5") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with Client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            ok = structured(await client.call_tool("run_python", {"code": "print(sum(range(10)))"}))
            slow = structured(
                await client.call_tool("run_bash", {"code": "sleep 30", "timeout_seconds": 1})
            )
            memory = structured(
                await client.call_tool(
                    "run_python",
                    {"code": "chunks = []\nwhile True:\n    chunks.append(bytearray(2**24))\n"},
                )
            )
    assert names == {"run_python", "run_bash"}
    assert ok["stdout"] == "45\n"
    assert slow["killed_reason"] == "timeout"
    assert memory["killed_reason"] == "memory"


def test_a_bad_http_address_is_a_one_line_error() -> None:
    result = agentkube("sandbox", "mcp", "--http", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --http 'nowhere' must be HOST:PORT, for example 127.0.0.1:8765 (port 0 picks one)"
    ]
