"""agent:<name> tools in one process: the planner's model delegates, and gets answers back."""

from __future__ import annotations

import itertools
import json

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo

from agentkube.runtime.agent import TaskBudget
from agentkube.runtime.events import RunEvent
from tests.teams.helpers import team_of, tool_returns


def delegating_to(*targets: str, task: str = "compute 6*7"):  # type: ignore[no-untyped-def]
    """A model that delegates to each target in turn, then quotes every answer."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = tool_returns(messages)
        if len(done) < len(targets):
            return ModelResponse(
                parts=[ToolCallPart(f"agent_{targets[len(done)]}", {"task": task})]
            )
        return ModelResponse(parts=[TextPart(" | ".join(json.dumps(r.content) for r in done))])

    return script


def answering(text: str):  # type: ignore[no-untyped-def]
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(text)])

    return script


PLANNER = "{model: m, role: planner, tools: ['agent:coder']}"
CODER = "{model: m, role: executor, systemPrompt: 'You compute exact answers in Python.'}"


async def test_the_planner_sees_one_tool_per_agent_described_by_its_system_prompt() -> None:
    seen: list[AgentInfo] = []

    def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        return ModelResponse(parts=[TextPart("no need")])

    _, runtimes = team_of({"planner": (PLANNER, planner), "coder": (CODER, answering("42"))})
    await runtimes["planner"].run("hi")
    (tool,) = seen[0].function_tools
    assert tool.name == "agent_coder"
    assert "You compute exact answers in Python." in (tool.description or "")
    assert list(tool.parameters_json_schema["properties"]) == ["task"]


async def test_a_delegated_subtask_returns_the_executors_answer_and_nests_its_outcome() -> None:
    _, runtimes = team_of(
        {"planner": (PLANNER, delegating_to("coder")), "coder": (CODER, answering("42"))}
    )
    events: list[RunEvent] = []
    outcome = await runtimes["planner"].run("what is 6*7?", emit=events.append)
    (call,) = outcome.tool_calls
    assert call.name == "agent:coder" and call.ok
    assert call.args == {"task": "compute 6*7"}
    assert json.loads(outcome.output) == {"agent": "coder", "output": "42", "tool_calls": []}
    assert call.delegated is not None
    assert call.delegated["agent"] == "coder" and call.delegated["output"] == "42"
    # the executor's events reach the planner's sink, tagged with the delegation path
    paths = {tuple(e.data["path"]) for e in events if "path" in e.data}
    assert paths == {("planner", "coder")}
    assert outcome.model_requests == 3  # two for the planner, one charged by the coder


async def test_delegating_back_to_an_agent_in_the_chain_is_refused_as_a_cycle() -> None:
    _, runtimes = team_of(
        {
            "a": ("{model: m, tools: ['agent:b']}", delegating_to("b")),
            "b": ("{model: m, tools: ['agent:a']}", delegating_to("a")),
        }
    )
    outcome = await runtimes["a"].run("loop")
    inner = outcome.tool_calls[0].delegated
    assert inner is not None
    (refused,) = inner["tool_calls"]
    assert refused["name"] == "agent:a" and refused["ok"] is False
    assert "cycle (a → b → a)" in refused["result"]


async def test_a_chain_longer_than_the_depth_limit_is_refused() -> None:
    names = ["a", "b", "c", "d"]
    members = {
        name: (f"{{model: m, tools: ['agent:{nxt}']}}", delegating_to(nxt))
        for name, nxt in itertools.pairwise(names)
    }
    members["d"] = ("{model: m}", answering("bottom"))
    _, runtimes = team_of(members, max_depth=2)
    outcome = await runtimes["a"].run("go deep")
    b = outcome.tool_calls[0].delegated
    assert b is not None and b["tool_calls"][0]["ok"]  # a → b → c: two hops, allowed
    c = b["tool_calls"][0]["delegated"]
    refused = c["tool_calls"][0]
    assert refused["ok"] is False
    assert "a → b → c already has 2 hops, the limit is 2" in refused["result"]


async def test_a_subtask_gets_what_is_left_of_its_callers_budget() -> None:
    team, runtimes = team_of(
        {"planner": (PLANNER, delegating_to("coder")), "coder": (CODER, answering("42"))}
    )
    given: list[TaskBudget] = []
    original = team.delegate

    async def spy(subtask, emit):  # type: ignore[no-untyped-def]
        given.append(subtask.budget)
        return await original(subtask, emit)

    team.delegate = spy  # type: ignore[method-assign]
    await runtimes["planner"].run("x", budget=TaskBudget(max_model_requests=5, timeout_s=30))
    (budget,) = given
    assert budget.max_model_requests == 4  # the planner spent one request before delegating
    assert 25 < budget.timeout_s <= 30


async def test_a_subtask_that_outspends_the_budget_left_fails_and_the_planner_is_told() -> None:
    """planner (1 of 3) → coder (gets 2: 1, then it delegates) → checker (1, charged to the
    coder) → coder's second request would be its third: refused."""

    _, runtimes = team_of(
        {
            "planner": (PLANNER, delegating_to("coder")),
            "coder": ("{model: m, tools: ['agent:checker']}", delegating_to("checker")),
            "checker": ("{model: m}", answering("ok")),
        }
    )
    outcome = await runtimes["planner"].run(
        "x", budget=TaskBudget(max_model_requests=3, timeout_s=30)
    )
    (call,) = outcome.tool_calls
    assert call.ok is False
    assert "limit of 2 model requests" in call.result


async def test_a_failing_subtask_reaches_the_planner_as_a_tool_error() -> None:
    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("the executor's model exploded")

    _, runtimes = team_of({"planner": (PLANNER, delegating_to("coder")), "coder": (CODER, broken)})
    outcome = await runtimes["planner"].run("x", budget=TaskBudget(max_model_requests=4))
    (call,) = outcome.tool_calls
    assert call.ok is False
    assert "the subtask failed" in call.result and "exploded" in call.result
    assert json.loads(outcome.output)["error"].startswith("the subtask failed")
