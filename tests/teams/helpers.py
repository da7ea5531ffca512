"""Teams for tests: Agents from snippets, each with its own scripted pydantic-ai model."""

from __future__ import annotations

from collections.abc import Callable

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.runtime.agent import AgentRuntime, TaskBudget
from agentkube.runtime.team import LocalTeam
from agentkube.runtime.tools import ToolEnvironment
from tests.runtime.helpers import agent_from, runtime_for

Script = Callable[[list[ModelMessage], AgentInfo], ModelResponse]


def tool_returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [
        part
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


def team_of(
    members: dict[str, tuple[str, Script]],
    *,
    max_depth: int = 3,
    budget: TaskBudget | None = None,
) -> tuple[LocalTeam, dict[str, AgentRuntime]]:
    """A LocalTeam of ``{name: (spec, script)}``, every member driven by its own script."""
    team = LocalTeam(max_depth=max_depth)
    runtimes = {}
    for name, (spec, script) in members.items():
        runtime = runtime_for(
            agent_from(spec, name=name),
            FunctionModel(script),
            tools=ToolEnvironment(delegator=team),
            budget=budget,
        )
        team.add(runtime)
        runtimes[name] = runtime
    return team, runtimes
