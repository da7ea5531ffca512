"""Building runtimes for tests: a manifest snippet, an injected pydantic-ai model."""

from __future__ import annotations

from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models import Model as PydanticAIModel
from pydantic_ai.models.function import AgentInfo

from agentkube.api.loading import parse_documents
from agentkube.api.models import Agent
from agentkube.memory.history import HistoryStore
from agentkube.runtime.agent import AgentRuntime, TaskBudget
from agentkube.runtime.building import history_for
from agentkube.runtime.model_resolution import ModelChoice
from agentkube.runtime.tools import ToolEnvironment


def agent_from(spec: str, name: str = "tester") -> Agent:
    text = f"apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    agent = parse_documents(text, "test.yaml")[0]
    assert isinstance(agent, Agent)
    return agent


def runtime_for(
    agent: Agent,
    model: PydanticAIModel,
    *,
    tools: ToolEnvironment | None = None,
    data_dir: Path | None = None,
    history: HistoryStore | None = None,
    budget: TaskBudget | None = None,
) -> AgentRuntime:
    choice = ModelChoice(requested=agent.spec.model, kind="offline", model_id="scripted")
    store = history if history is not None else (history_for(agent, data_dir) if data_dir else None)
    return AgentRuntime(
        agent,
        choice=choice,
        model=model,
        tools=tools or ToolEnvironment(),
        history=store,
        budget=budget,
    )


def prompts(messages: list[ModelMessage]) -> list[str]:
    """Every user prompt in ``messages``, in order."""
    return [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart)
    ]


def echo_prompts(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answers with every user prompt it can see, so a test can tell what history it got."""
    return ModelResponse(parts=[TextPart(" | ".join(prompts(messages)))])
