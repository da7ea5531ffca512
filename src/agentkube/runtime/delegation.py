"""``agent:<name>`` tools: a planner hands a subtask to another agent and gets its answer back.

The planner's model sees one tool per named agent, described by the target's system prompt.
Calling it runs the subtask on the target through a :class:`Delegator` — in one process
(:class:`~agentkube.runtime.team.LocalTeam`) or over the network — and returns the target's
answer plus a summary of the tools it called; the full outcome is kept on the tool-call record,
so ``--json`` nests it.

Three rules keep delegation bounded, checked here before anything is sent:

* **depth** — a chain planner → executor → … has at most ``max_depth`` hops (default 3);
* **cycles** — an agent already in the chain is never delegated to again;
* **budget** — a subtask gets what is left of its caller's budget (model requests, wall time),
  and the model requests it spends are charged to the caller, so a team never spends more than
  the root task was given.

A refusal, or a subtask that fails, reaches the caller's model as a tool result with an
``error``, like a sandbox failure: the model can react, the run goes on. A subtask that fails
is also an incident of the caller (:mod:`agentkube.runtime.incidents`: a ``DelegationFailed``
Event on its Agent); a refusal is the rules at work, not an incident.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from pydantic_ai import RunContext, Tool
from pydantic_ai.tools import ToolDefinition

from agentkube.api.teams import AGENT_TOOL_PREFIX
from agentkube.errors import AgentkubeError
from agentkube.runtime.events import EventSink, RunEvent
from agentkube.runtime.incidents import NO_INCIDENTS, Incidents
from agentkube.runtime.tools import RunDeps

if TYPE_CHECKING:
    from agentkube.runtime.agent import RunOutcome, TaskBudget

DESCRIPTION_CHARS = 600
SUMMARY_RESULT_CHARS = 300


@dataclass(frozen=True, kw_only=True)
class Subtask:
    """One delegated piece of work."""

    target: str
    task: str
    chain: tuple[str, ...]
    """The agents from the root task to the caller, the caller last."""
    budget: TaskBudget
    parent: str | None = None
    """The caller's durable task id, if it has one."""
    call: int = 0
    """Which ``agent:`` call of the caller's run this is (1, 2, …)."""


class Delegator(Protocol):
    """Runs subtasks on other agents."""

    @property
    def max_depth(self) -> int: ...

    def describe(self, target: str) -> str:
        """What the target agent does, for the tool's description."""
        ...

    async def delegate(self, subtask: Subtask, emit: EventSink) -> RunOutcome:
        """Run ``subtask`` on its target and return the target's outcome."""
        ...


def tool_name_for(target: str) -> str:
    """The model-facing tool name for ``agent:<target>`` (OpenAI allows ``[A-Za-z0-9_-]``)."""
    return "agent_" + re.sub(r"[^A-Za-z0-9_-]", "_", target)


def tool_description(target: str, about: str) -> str:
    about = " ".join(about.split())
    if len(about) > DESCRIPTION_CHARS:
        about = about[:DESCRIPTION_CHARS] + "…"
    return (
        f"Delegate a subtask to the agent {target!r} and get its answer. What it does: {about} "
        "Give it a complete, self-contained task; the answer includes the tools it used."
    )


def refusal(chain: tuple[str, ...], target: str, max_depth: int) -> str | None:
    """Why delegating from ``chain`` to ``target`` is refused, or None if it is allowed."""
    if target in chain:
        loop = " → ".join((*chain, target))
        return f"refused: delegating to {target!r} would close a cycle ({loop})"
    if len(chain) > max_depth:
        return (
            f"refused: the delegation chain {' → '.join(chain)} already has {len(chain) - 1} "
            f"hops, the limit is {max_depth}; answer with what you have"
        )
    return None


def outcome_summary(outcome: RunOutcome) -> dict[str, Any]:
    """What the caller's model sees of a subtask: the answer and its tool calls, in short."""
    return {
        "agent": outcome.agent,
        "output": outcome.output,
        "tool_calls": [
            {"name": c.name, "ok": c.ok, "result": c.result[:SUMMARY_RESULT_CHARS]}
            for c in outcome.tool_calls
        ],
    }


def nested(emit: EventSink, chain: tuple[str, ...]) -> EventSink:
    """A sink that tags a subtask's events with the chain that led to them (the tree)."""

    def forward(event: RunEvent) -> None:
        path = event.data.get("path") or list(chain)
        emit(event.model_copy(update={"data": {**event.data, "path": path}}))

    return forward


def _budget_left(ctx: RunContext[RunDeps]) -> TaskBudget | str:
    from agentkube.runtime.agent import TaskBudget

    requests = ctx.deps.max_requests - ctx.usage.requests
    seconds = ctx.deps.deadline - time.monotonic()
    if requests < 1 or seconds < 1:
        return "refused: the task's budget is spent (model requests or time); answer now"
    return TaskBudget(max_model_requests=requests, timeout_s=seconds)


def agent_tool(
    target: str, delegator: Delegator, incidents: Incidents = NO_INCIDENTS
) -> Tool[RunDeps]:
    spec_name = AGENT_TOOL_PREFIX + target

    async def delegate(ctx: RunContext[RunDeps], task: str) -> dict[str, Any]:
        """Delegate a subtask.

        Args:
            task: the complete subtask for the agent, with everything it needs to know.
        """
        async with ctx.deps.recorder.call(spec_name, {"task": task}) as call:
            chain = ctx.deps.chain
            budget = _budget_left(ctx)
            refused = refusal(chain, target, delegator.max_depth)
            if refused is None and isinstance(budget, str):
                refused = budget
            if refused is not None or isinstance(budget, str):
                call.result, call.ok = refused or "refused", False
                return {"agent": target, "error": call.result}
            ctx.deps.delegations += 1
            subtask = Subtask(
                target=target,
                task=task,
                chain=chain,
                budget=budget,
                parent=ctx.deps.task_id,
                call=ctx.deps.delegations,
            )
            try:
                outcome = await delegator.delegate(
                    subtask, nested(ctx.deps.recorder.emit, (*chain, target))
                )
            except AgentkubeError as e:
                await incidents.record(
                    "DelegationFailed", ctx.deps.task_id, f"delegation to agent {target!r}: {e}"
                )
                failure = {"agent": target, "error": f"the subtask failed: {e}"}
                call.result, call.ok = json.dumps(failure), False
                return failure
            ctx.usage.requests += outcome.model_requests  # charged to the caller's budget
            summary = outcome_summary(outcome)
            call.result = json.dumps(summary)
            call.delegated = outcome.model_dump(mode="json")
            return summary

    async def describe(ctx: RunContext[RunDeps], definition: ToolDefinition) -> ToolDefinition:
        # at run time: the team's members may be added after this tool is built
        return replace(definition, description=tool_description(target, delegator.describe(target)))

    return Tool(
        delegate,
        name=tool_name_for(target),
        description=tool_description(target, f"the agent {target}"),
        max_retries=1,
        prepare=describe,
    )
