"""The sandbox as an MCP server: ``run_python`` and ``run_bash`` for any MCP client.

Each tool call is one :class:`~agentkube.sandbox.ExecutionRequest` built by the same code as
``agentkube sandbox exec`` (:mod:`agentkube.sandbox.requests`), run with the limits the server was
started with, and answered with the same :class:`~agentkube.sandbox.ExecutionResult` that
``exec --json`` prints: the code's own failure (non-zero exit, killed on timeout) is a normal
result; only a request the sandbox refuses, or a sandbox that cannot run, is a tool error.

Policy: a call's ``timeout_seconds`` may shorten the server's timeout, never lengthen it, so
whoever starts the server bounds what any client can spend. Built on the official MCP SDK's
``MCPServer`` (FastMCP in SDK v1); the transports (stdio, streamable HTTP) are the caller's.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from agentkube import __version__
from agentkube.sandbox.contract import ExecutionResult, Language, Limits, Sandbox
from agentkube.sandbox.errors import SandboxFailure, SandboxRequestError, SandboxUnavailable
from agentkube.sandbox.requests import build_request, parse_timeout

SERVER_NAME = "agentkube-sandbox"
RUN_PYTHON = "run_python"
RUN_BASH = "run_bash"


def call_limits(limits: Limits, timeout_seconds: float | None) -> Limits:
    """The server's limits with a call's timeout, which may be shorter, never longer."""
    if timeout_seconds is None:
        return limits
    seconds = parse_timeout(timeout_seconds, name="timeout_seconds")
    if seconds > limits.timeout_s:
        raise SandboxRequestError(
            f"timeout_seconds {timeout_seconds:g} is above this server's limit of "
            f"{limits.timeout_s:g} s; pass at most {limits.timeout_s:g}"
        )
    return limits.model_copy(update={"timeout_s": seconds})


def tool_description(language: Language, limits: Limits) -> str:
    program = (
        "a Python 3 program (standard library only)" if language == "python" else "a bash script"
    )
    return (
        f"Run {program} in an isolated, ephemeral sandbox and return its exit_code, stdout, "
        "stderr, killed_reason (timeout, memory, output_limit, pids or null) and truncated. "
        f"The sandbox has no network, {limits.cpu:g} CPU, {limits.memory_bytes // 2**20} MiB of "
        f"memory and a {limits.timeout_s:g} s timeout (timeout_seconds may shorten it); "
        "nothing persists between calls. Print whatever you want to see."
    )


async def run_code(
    sandbox: Sandbox, limits: Limits, language: Language, code: str, timeout_seconds: float | None
) -> ExecutionResult:
    """One tool call; a refused request or a broken sandbox becomes a :class:`ToolError`."""
    try:
        request = build_request(
            code, language, call_limits(limits, timeout_seconds), origin="the code argument"
        )
        return await sandbox.execute(request)
    except SandboxRequestError as e:
        raise ToolError(f"the sandbox refused the request: {e}") from e
    except (SandboxFailure, SandboxUnavailable) as e:
        raise ToolError(f"the sandbox could not run the code: {e}") from e


def create_server(sandbox: Sandbox, limits: Limits) -> MCPServer:
    """An MCP server whose two tools run code in ``sandbox`` with ``limits``."""
    server: MCPServer = MCPServer(
        SERVER_NAME,
        version=__version__,
        instructions="Runs untrusted code in agentkube's locked-down sandbox: no network, "
        "no host files, bounded CPU, memory, processes and time.",
        log_level="WARNING",
    )

    @server.tool(name=RUN_PYTHON, description=tool_description("python", limits))
    async def run_python(code: str, timeout_seconds: float | None = None) -> ExecutionResult:
        return await run_code(sandbox, limits, "python", code, timeout_seconds)

    @server.tool(name=RUN_BASH, description=tool_description("bash", limits))
    async def run_bash(code: str, timeout_seconds: float | None = None) -> ExecutionResult:
        return await run_code(sandbox, limits, "bash", code, timeout_seconds)

    return server
