"""A planner and an executor through the real OpenAI client, against the stand-in server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agentkube.api.loading import parse_documents
from agentkube.api.teams import select_team
from agentkube.runtime.building import RuntimeSettings
from agentkube.runtime.team import open_team
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve

TEAM = """
apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: planner}
spec: {model: standin-model, role: planner, tools: ['agent:coder'], memory: none}
---
apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: coder}
spec: {model: standin-model, role: executor, memory: none, systemPrompt: You compute sums.}
"""


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


async def test_the_planner_delegates_over_the_real_model_wire(
    model_server: tuple[ScriptedModel, str],
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("agent_coder", {"task": "add 2 and 3"})]),  # planner
        Reply(text="5"),  # coder
        Reply(text="The coder says 5."),  # planner, with the coder's answer
    ]
    team = select_team(parse_documents(TEAM, "team.yaml"), "team.yaml")
    settings = RuntimeSettings(environ={}, base_url=base_url)
    async with open_team(team, settings) as planner:
        outcome = await planner.run("What is 2 + 3?")
    assert outcome.output == "The coder says 5."
    assert outcome.tool_calls[0].delegated is not None
    assert outcome.tool_calls[0].delegated["output"] == "5"
    first, second, third = script.requests
    (tool,) = first["tools"]
    assert tool["function"]["name"] == "agent_coder"
    assert "You compute sums." in tool["function"]["description"]
    assert "tools" not in second  # the coder has no tools
    assert second["messages"][-1] == {"role": "user", "content": "add 2 and 3"}
    returned = json.loads(third["messages"][-1]["content"])
    assert returned == {"agent": "coder", "output": "5", "tool_calls": []}
