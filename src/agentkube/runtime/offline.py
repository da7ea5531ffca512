"""The offline demo model: the embedded default when no model endpoint is configured.

It does no reasoning. It finds the fenced Python blocks (```python … ```) in the task, runs each
through the agent's ``python-interpreter`` tool — so the answer really is computed in the sandbox —
and answers with their output. An agent without that tool but with an MCP server's ``run_python``
(``agentkube sandbox mcp`` as an ``mcp:`` tool) gets its blocks run there. Without code blocks or
without the tool it says so, and how to configure a real model.
"""

from __future__ import annotations

import re
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


def code_blocks(text: str) -> list[str]:
    """The fenced Python blocks of a text, in order."""
    return [block.strip("\n") for block in _FENCE.findall(text) if block.strip()]


def _latest_task(messages: list[ModelMessage]) -> str:
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
    out = str(content.get("stdout", "")).rstrip("\n")
    problems = []
    if content.get("killed_reason"):
        problems.append(f"killed: {content['killed_reason']}")
    elif content.get("exit_code") not in (0, None):
        problems.append(f"exit code {content['exit_code']}")
    if problems and content.get("stderr"):
        problems.append(str(content["stderr"]).rstrip("\n"))
    return "\n".join([out, *problems]).strip("\n")


def _interpreter(info: AgentInfo) -> str:
    names = [t.name for t in info.function_tools]
    if PYTHON_INTERPRETER in names:
        return PYTHON_INTERPRETER
    return next((name for name in names if name.endswith("_run_python")), PYTHON_INTERPRETER)


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """One step of the offline model: call the tool for the next block, or answer."""
    blocks = code_blocks(_latest_task(messages))
    interpreter = _interpreter(info)
    has_interpreter = any(t.name == interpreter for t in info.function_tools)
    if not blocks or not has_interpreter:
        missing = (
            "no fenced ```python block in the task"
            if has_interpreter or not blocks
            else (f"this agent has no {PYTHON_INTERPRETER} tool")
        )
        return ModelResponse(parts=[TextPart(f"({DISCLAIMER}; {missing}; {HOW_TO_CONFIGURE})")])
    done = _returns_since_task(messages)
    if len(done) < len(blocks):
        call = ToolCallPart(interpreter, {"code": blocks[len(done)]})
        return ModelResponse(parts=[call])
    outputs = [_render_output(r.content) for r in done]
    if len(outputs) == 1:
        return ModelResponse(parts=[TextPart(outputs[0])])
    answer = "\n".join(f"[block {i}]\n{out}" for i, out in enumerate(outputs, 1))
    return ModelResponse(parts=[TextPart(answer)])


def offline_model() -> FunctionModel:
    return FunctionModel(respond, model_name=OFFLINE_MODEL_NAME)
