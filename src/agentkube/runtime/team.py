"""A team in one process: every Agent of a file, the lead's ``agent:`` tools calling the others.

:class:`LocalTeam` is the embedded :class:`~agentkube.runtime.delegation.Delegator`: a subtask
runs on the target's own :class:`AgentRuntime` (its model, tools, sandbox), at most ``replicas``
of one agent at once — the workers a Deployment would have. Each subtask is a conversation of
its own, so executors keep no history between unrelated subtasks.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from agentkube.api.teams import DEFAULT_MAX_DEPTH, Team
from agentkube.errors import AgentkubeError
from agentkube.runtime.agent import DEFAULT_SYSTEM_PROMPT, AgentRuntime, RunOutcome
from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.delegation import Subtask
from agentkube.runtime.errors import DelegationFailed
from agentkube.runtime.events import EventSink

log = logging.getLogger(__name__)


class LocalTeam:
    """Delegates to agents running in this process."""

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self._max_depth = max_depth
        self._runtimes: dict[str, AgentRuntime] = {}
        self._workers: dict[str, asyncio.Semaphore] = {}

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def add(self, runtime: AgentRuntime) -> None:
        name = runtime.agent.metadata.name
        self._runtimes[name] = runtime
        self._workers[name] = asyncio.Semaphore(max(1, runtime.agent.spec.replicas))

    def runtime(self, name: str) -> AgentRuntime:
        return self._runtimes[name]

    def describe(self, target: str) -> str:
        runtime = self._runtimes.get(target)
        if runtime is None:
            return f"the agent {target}"
        return runtime.agent.spec.system_prompt or DEFAULT_SYSTEM_PROMPT.format(name=target)

    async def delegate(self, subtask: Subtask, emit: EventSink) -> RunOutcome:
        runtime = self._runtimes.get(subtask.target)
        if runtime is None:
            raise DelegationFailed(f"no agent {subtask.target!r} runs in this team")
        async with self._workers[subtask.target]:
            try:
                return await runtime.run(
                    subtask.task,
                    emit,
                    conversation=f"subtask-{uuid.uuid4().hex}",
                    budget=subtask.budget,
                    chain=subtask.chain,
                )
            except AgentkubeError:
                raise
            except Exception as e:  # an executor's bug fails its subtask, not the planner
                log.exception("subtask of agent %s failed", subtask.target)
                raise DelegationFailed(
                    f"agent {subtask.target!r} failed: {type(e).__name__}: {e}"
                ) from e


@asynccontextmanager
async def open_team(
    team: Team, settings: RuntimeSettings, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> AsyncIterator[AgentRuntime]:
    """The lead's runtime, with every member running in this process behind its tools."""
    local = LocalTeam(max_depth=max_depth)
    async with AsyncExitStack() as stack:
        for agent in team.members.values():
            runtime = await stack.enter_async_context(
                open_runtime(
                    agent, team.models, settings, delegator=local, mcp_servers=team.mcp_servers
                )
            )
            local.add(runtime)
        yield local.runtime(team.lead.metadata.name)
