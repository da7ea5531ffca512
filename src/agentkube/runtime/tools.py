"""The tool registry: spec.tools names -> pydantic-ai tools.

``python-interpreter`` runs code through the sandbox contract (local namespaces on one machine,
the sandbox gateway in a cluster); ``web-browser`` is pydantic-ai's SSRF-protected fetcher, which
refuses loopback/private addresses unless configured, pins the resolved IP, and caps size and
time. Every call goes through the run's :class:`ToolRecorder`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext, Tool
from pydantic_ai.common_tools.web_fetch import WebFetchLocalTool
from pydantic_ai.messages import BinaryContent

from agentkube.runtime.errors import ToolConfigError
from agentkube.runtime.recording import ToolRecorder
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits, Sandbox

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
    """What tools need from the outside: a sandbox, its limits, web settings."""

    sandbox: Sandbox | None = None
    limits: Limits = field(default_factory=Limits)
    web: WebSettings = field(default_factory=WebSettings)


@dataclass
class RunDeps:
    """Per-run state handed to every tool."""

    recorder: ToolRecorder


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


def python_interpreter_tool(sandbox: Sandbox, limits: Limits) -> Tool[RunDeps]:
    async def python_interpreter(ctx: RunContext[RunDeps], code: str) -> dict[str, Any]:
        """Run Python 3 code in an isolated sandbox and return its exit code, stdout and stderr.

        The sandbox has no network, a 0.5 CPU / 128 MiB budget and a short timeout; only the
        standard library is available. Print whatever you want to see.

        Args:
            code: a complete Python 3 program.
        """
        async with ctx.deps.recorder.call(PYTHON_INTERPRETER, {"code": code}) as call:
            result = await sandbox.execute(
                ExecutionRequest(language="python", code=code, limits=limits)
            )
            summary = execution_summary(result)
            call.result, call.ok = json.dumps(summary), result.ok
            return summary

    return Tool(python_interpreter, name=PYTHON_INTERPRETER, max_retries=3)


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
            tools.append(python_interpreter_tool(env.sandbox, env.limits))
        elif name == WEB_BROWSER:
            tools.append(web_browser_tool(env.web))
        else:
            kind = name.split(":", 1)[0]
            raise ToolConfigError(
                f"tool {name!r}: {kind}: tools are not available in this release; "
                f"remove it from spec.tools or use {PYTHON_INTERPRETER} / {WEB_BROWSER}"
            )
    return tools
