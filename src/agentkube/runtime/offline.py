"""The offline demo model: the embedded default when no model endpoint is configured.

It does no reasoning. It finds the fenced Python blocks (```python … ```) in the task, runs each
through the agent's ``python-interpreter`` tool — so the answer really is computed in the sandbox —
and answers with their output. An agent without that tool but with an MCP server's ``run_python``
(``agentkube sandbox mcp`` as an ``mcp:`` tool) gets its blocks run there. Without code blocks or
without the tool it says so, and how to configure a real model.

Delegation, deterministically: a line ``@<agent>:`` (or ``@<agent>`` alone) starts a section that
runs to the next such line or the end; each section whose agent this one has an ``agent:<name>``
tool for is handed to that agent, in order, and its answer is quoted under ``[@<agent>]``. Text
before the first section is the agent's own (its Python blocks run here); code inside a section
is the target's to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.runtime.delegation import tool_name_for
from agentkube.runtime.tools import PYTHON_INTERPRETER

OFFLINE_MODEL_NAME = "offline"
DISCLAIMER = (
    "the offline demo model does no reasoning: it only runs the task's fenced Python blocks "
    "in the sandbox"
)
HOW_TO_CONFIGURE = (
    "for real answers configure an OpenAI-compatible endpoint: --base-url URL, "
    "AGENTKUBE_MODEL_BASE_URL, or a Model with spec.endpoint"
)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_SECTION = re.compile(r"^@([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?):?[ \t]*(.*)$", re.MULTILINE)


def code_blocks(text: str) -> list[str]:
    """The fenced Python blocks of a text, in order."""
    return [block.strip("\n") for block in _FENCE.findall(text) if block.strip()]


def sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first ``@<agent>`` line, and each ``(agent, subtask)`` section."""
    found = list(_SECTION.finditer(text))
    if not found:
        return text, []
    parts: list[tuple[str, str]] = []
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        body = (match.group(2) + text[match.end() : end]).strip()
        parts.append((match.group(1), body))
    return text[: found[0].start()], parts


@dataclass(frozen=True)
class _Step:
    label: str
    tool: str
    args: dict[str, Any]


def _plan(task: str, tools: set[str]) -> list[_Step]:
    """The tool calls the offline model makes for ``task``, in order."""
    own, delegated = sections(task)
    steps: list[_Step] = []
    interpreter = _interpreter(tools)
    if interpreter is not None:
        steps += [
            _Step(f"block {i}", interpreter, {"code": code})
            for i, code in enumerate(code_blocks(own), 1)
        ]
    for agent, subtask in delegated:
        if tool_name_for(agent) in tools and subtask:
            steps.append(_Step(f"@{agent}", tool_name_for(agent), {"task": subtask}))
    return steps


def _interpreter(tools: set[str]) -> str | None:
    """``python-interpreter``, else an MCP server's ``…_run_python``, else None."""
    if PYTHON_INTERPRETER in tools:
        return PYTHON_INTERPRETER
    return next((name for name in sorted(tools) if name.endswith("_run_python")), None)


def latest_task(messages: list[ModelMessage]) -> str:
    """The text of the last user prompt in ``messages`` (empty if there is none)."""
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _returns_since_task(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    returns: list[ToolReturnPart] = []
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            if any(isinstance(p, UserPromptPart) for p in message.parts):
                break
            returns[:0] = [p for p in message.parts if isinstance(p, ToolReturnPart)]
    return returns


def _render_output(content: Any) -> str:
    if not isinstance(content, dict):
        return str(content)
    if "agent" in content:  # an agent: tool's answer
        return str(content.get("output") or content.get("error", ""))
    out = str(content.get("stdout", "")).rstrip("\n")
    problems = []
    if content.get("killed_reason"):
        problems.append(f"killed: {content['killed_reason']}")
    elif content.get("exit_code") not in (0, None):
        problems.append(f"exit code {content['exit_code']}")
    if problems and content.get("stderr"):
        problems.append(str(content["stderr"]).rstrip("\n"))
    return "\n".join([out, *problems]).strip("\n")


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """One step of the offline model: the next planned tool call, or the answer."""
    tools = {t.name for t in info.function_tools}
    steps = _plan(latest_task(messages), tools)
    if not steps:
        return ModelResponse(
            parts=[TextPart(f"({DISCLAIMER}; {_missing(tools)}; {HOW_TO_CONFIGURE})")]
        )
    done = _returns_since_task(messages)
    if len(done) < len(steps):
        step = steps[len(done)]
        return ModelResponse(parts=[ToolCallPart(step.tool, step.args)])
    outputs = [_render_output(r.content) for r in done]
    if len(outputs) == 1:
        return ModelResponse(parts=[TextPart(outputs[0])])
    answer = "\n".join(f"[{step.label}]\n{out}" for step, out in zip(steps, outputs, strict=True))
    return ModelResponse(parts=[TextPart(answer)])


def _missing(tools: set[str]) -> str:
    if any(t.startswith("agent_") for t in tools):
        return (
            "no fenced ```python block and no '@<agent>:' line naming an agent it can delegate to"
        )
    if _interpreter(tools) is None:
        return f"this agent has no {PYTHON_INTERPRETER} tool"
    return "no fenced ```python block in the task"


def offline_model() -> FunctionModel:
    return FunctionModel(respond, model_name=OFFLINE_MODEL_NAME)
