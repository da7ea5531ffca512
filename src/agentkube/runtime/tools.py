"""The tool registry: spec.tools names -> pydantic-ai tools.

``python-interpreter`` runs code through the sandbox contract (local namespaces on one machine,
the sandbox gateway in a cluster); ``web-browser`` is pydantic-ai's SSRF-protected fetcher, which
refuses loopback/private addresses unless configured, pins the resolved IP, and caps size and
time. Every call goes through the run's :class:`ToolRecorder`.

A sandbox that cannot run the code right now is the tool's failure, not the run's: a busy
sandbox (the agent's quota is used up) is waited for as long as it asks (``retry_after_s``, a few
times), and what still fails reaches the model as a tool result with an ``error`` it can react
to; an invalid request (code too large) is a ``ModelRetry``, the model's to fix. A refusal (the
gateway refused the agent, or the request is above the sandbox policy or invalid) is also an
incident of the agent (:mod:`agentkube.runtime.incidents`: a ``SandboxRefused`` Event).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_ai import ModelRetry, RunContext, Tool
from pydantic_ai.common_tools.web_fetch import WebFetchLocalTool
from pydantic_ai.messages import BinaryContent
from pydantic_ai.toolsets import AbstractToolset

from agentkube.api.mcp import mcp_server_name, mcp_server_url
from agentkube.runtime.errors import ToolConfigError
from agentkube.runtime.incidents import NO_INCIDENTS, Incidents
from agentkube.runtime.recording import ToolRecorder
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits, Sandbox
from agentkube.sandbox.errors import (
    SandboxBusy,
    SandboxFailure,
    SandboxRefused,
    SandboxRequestError,
    SandboxUnavailable,
)
from agentkube.telemetry import spans

if TYPE_CHECKING:
    from agentkube.runtime.delegation import Delegator

PYTHON_INTERPRETER = "python-interpreter"
WEB_BROWSER = "web-browser"


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    allow_private: bool = False
    timeout_s: int = 15
    max_bytes: int = 2 * 1024 * 1024
    max_chars: int = 20_000


@dataclass(frozen=True, kw_only=True)
class ToolEnvironment:
    """What tools need from the outside: a sandbox, its limits, web settings, and the toolsets
    of the connected ``mcp:`` servers (:mod:`agentkube.runtime.mcp_tools`)."""

    sandbox: Sandbox | None = None
    limits: Limits = field(default_factory=Limits)
    web: WebSettings = field(default_factory=WebSettings)
    toolsets: tuple[AbstractToolset[Any], ...] = ()
    delegator: Delegator | None = None
    """Runs ``agent:<name>`` tools' subtasks (a team in one process, or agents over A2A)."""
    incidents: Incidents = NO_INCIDENTS
    """Where the agent's sandbox refusals and failed delegations are recorded."""


@dataclass
class RunDeps:
    """Per-run state handed to every tool."""

    recorder: ToolRecorder
    chain: tuple[str, ...] = ()
    """The agents from the root task to this run, this one last (for delegation)."""
    task_id: str | None = None
    """The durable task this run is (None: a run no one will redo)."""
    delegations: int = 0
    """``agent:`` calls made so far in this run: with ``task_id``, a subtask's identity."""
    max_requests: int = 1_000_000
    deadline: float = math.inf
    """``time.monotonic()`` by which the run must end."""


MODEL_OUTPUT_CHARS = 16_000


def _clip(text: str) -> tuple[str, bool]:
    if len(text) <= MODEL_OUTPUT_CHARS:
        return text, False
    half = MODEL_OUTPUT_CHARS // 2
    return f"{text[:half]}\n… [{len(text) - MODEL_OUTPUT_CHARS} chars cut] …\n{text[-half:]}", True


def execution_summary(result: ExecutionResult) -> dict[str, Any]:
    """What the model sees of one execution: head and tail of long output, not all of it.

    The sandbox already caps each stream (1 MiB by default); a model's context is far smaller.
    """
    stdout, cut_out = _clip(result.stdout)
    stderr, cut_err = _clip(result.stderr)
    return {
        "exit_code": result.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "killed_reason": result.killed_reason,
        "truncated": result.truncated or cut_out or cut_err,
    }


BUSY_RETRIES = 3
MAX_BUSY_WAIT_S = 10.0


def python_interpreter_description(limits: Limits) -> str:
    """The tool's description, from the limits it really runs with."""
    return (
        "Run Python 3 code in an isolated sandbox and return its exit code, stdout and stderr. "
        f"The sandbox has no network, {limits.cpu:g} CPU, {limits.memory_bytes // 2**20} MiB "
        f"of memory and a {limits.timeout_s:g} s timeout; only the standard library is "
        "available. Print whatever you want to see."
    )


async def execute_when_free(sandbox: Sandbox, request: ExecutionRequest) -> ExecutionResult:
    """``sandbox.execute``, waiting out a busy sandbox as long as it asks, a few times; one
    ``sandbox.execute`` client span (the gateway's server span, if any, is its child)."""
    attributes = {
        spans.SANDBOX_BACKEND: type(sandbox).__name__,
        spans.SANDBOX_LANGUAGE: request.language,
    }
    with spans.span("sandbox.execute", kind=spans.SpanKind.CLIENT, attributes=attributes) as span:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                result = await sandbox.execute(request)
            except SandboxBusy as e:
                if attempt == BUSY_RETRIES:
                    raise
                await asyncio.sleep(min(max(e.retry_after_s, 0.1), MAX_BUSY_WAIT_S))
            else:
                span.set_attribute(
                    spans.SANDBOX_EXIT_CODE, -1 if result.exit_code is None else result.exit_code
                )
                return result
    raise AssertionError("unreachable")  # pragma: no cover


def python_interpreter_tool(
    sandbox: Sandbox, limits: Limits, incidents: Incidents = NO_INCIDENTS
) -> Tool[RunDeps]:
    async def python_interpreter(ctx: RunContext[RunDeps], code: str) -> dict[str, Any]:
        """Run Python 3 code.

        Args:
            code: a complete Python 3 program.
        """
        async with ctx.deps.recorder.call(PYTHON_INTERPRETER, {"code": code}) as call:
            request = ExecutionRequest(language="python", code=code, limits=limits)
            try:
                result = await execute_when_free(sandbox, request)
            except SandboxRequestError as e:
                await incidents.record("SandboxRefused", ctx.deps.task_id, str(e))
                raise ModelRetry(f"the sandbox refused the code: {e}") from e
            except (SandboxFailure, SandboxUnavailable) as e:
                if isinstance(e, SandboxRefused):
                    await incidents.record("SandboxRefused", ctx.deps.task_id, str(e))
                failure: dict[str, Any] = {"error": f"the sandbox could not run the code: {e}"}
                if isinstance(e, SandboxBusy):
                    failure["retry_after_s"] = e.retry_after_s
                call.result, call.ok = json.dumps(failure), False
                return failure
            summary = execution_summary(result)
            call.result, call.ok = json.dumps(summary), result.ok
            return summary

    return Tool(
        python_interpreter,
        name=PYTHON_INTERPRETER,
        description=python_interpreter_description(limits),
        max_retries=3,
    )


def web_browser_tool(settings: WebSettings) -> Tool[RunDeps]:
    fetcher = WebFetchLocalTool(
        max_content_length=settings.max_chars,
        allow_local_urls=settings.allow_private,
        timeout=settings.timeout_s,
        max_download_bytes=settings.max_bytes,
    )

    async def web_browser(ctx: RunContext[RunDeps], url: str) -> dict[str, Any]:
        """Fetch a web page (http or https) and return its readable text as markdown.

        Args:
            url: the absolute URL to fetch.
        """
        async with ctx.deps.recorder.call(WEB_BROWSER, {"url": url}) as call:
            page = await fetcher(url)
            if isinstance(page, BinaryContent):
                result: dict[str, Any] = {
                    "url": url,
                    "content": f"[binary content: {page.media_type}, {len(page.data)} bytes]",
                }
            else:
                result = dict(page)
            call.result = json.dumps(result)
            return result

    return Tool(web_browser, name=WEB_BROWSER, max_retries=3)


def build_tools(names: list[str], env: ToolEnvironment) -> list[Tool[RunDeps]]:
    """The pydantic-ai tools for ``spec.tools``; refuses tools that cannot run here."""
    tools: list[Tool[RunDeps]] = []
    for name in names:
        if name == PYTHON_INTERPRETER:
            if env.sandbox is None:
                raise ToolConfigError(f"tool {name!r} needs a sandbox, and none is configured")
            tools.append(python_interpreter_tool(env.sandbox, env.limits, env.incidents))
        elif name == WEB_BROWSER:
            tools.append(web_browser_tool(env.web))
        elif mcp_server_url(name) is not None or mcp_server_name(name) is not None:
            continue  # an MCP server's tools come as a toolset, connected by open_mcp_tools
        elif name.startswith("agent:") and env.delegator is not None:
            from agentkube.runtime.delegation import agent_tool

            tools.append(agent_tool(name.removeprefix("agent:"), env.delegator, env.incidents))
        elif name.startswith("agent:"):
            raise ToolConfigError(
                f"tool {name!r} has no agent to delegate to here; run a file that also defines "
                f"Agent {name.removeprefix('agent:')}, or serve it in a cluster"
            )
        else:
            kind = name.split(":", 1)[0]
            raise ToolConfigError(
                f"tool {name!r}: {kind}: tools are not available in this release; "
                f"remove it from spec.tools or use {PYTHON_INTERPRETER} / {WEB_BROWSER}"
            )
    return tools
