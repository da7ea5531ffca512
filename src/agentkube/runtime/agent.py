"""One agent, built from its spec: pydantic-ai does the loop, we supply model, tools and memory.

:class:`AgentRuntime` is shared by ``agentkube run`` (one task, then exit) and ``agentkube agent
serve`` (many tasks over HTTP). A run emits :class:`RunEvent` s as it goes and returns a
:class:`RunOutcome` with the answer, the model that gave it and every tool call.

History is per conversation: ``namespace/agent/conversation``. Runs of one conversation take
turns (a lock per conversation), so two clients never interleave appends to one history; runs
of different conversations go on side by side. Every run is bounded by a :class:`TaskBudget`:
pydantic-ai's ``UsageLimits`` for model requests, and a wall-clock timeout that cancels the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import AgentRun
from pydantic_ai.capabilities import AbstractCapability, Instrumentation
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    ModelMessage,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import Model as PydanticAIModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.usage import RunUsage, UsageLimits

from agentkube.api.models import Agent
from agentkube.memory.history import HistoryStore
from agentkube.runtime.errors import ModelRequestFailed, ModelUnreachable, TaskLimitReached
from agentkube.runtime.events import EventSink, RunEvent, discard
from agentkube.runtime.model_resolution import ModelChoice
from agentkube.runtime.model_timing import ModelTiming
from agentkube.runtime.recording import ToolCallRecord, ToolRecorder
from agentkube.runtime.tools import RunDeps, ToolEnvironment, build_tools
from agentkube.telemetry.tracing import current as current_tracing

DEFAULT_SYSTEM_PROMPT = (
    "You are {name}, an agent running on agentkube. Use your tools when they help; "
    "code you run executes in an isolated sandbox without network access. Answer concisely."
)


DEFAULT_CONVERSATION = "default"


@dataclass(frozen=True, kw_only=True)
class TaskBudget:
    """What one task may spend before it is stopped."""

    max_model_requests: int = 25
    timeout_s: float = 600.0


@dataclass
class _Turn:
    """Runs of one conversation take turns; ``users`` counts the running and the waiting."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class RunOutcome(BaseModel):
    agent: str
    conversation: str = DEFAULT_CONVERSATION
    output: str
    model: str
    model_note: str | None = None
    tool_calls: list[ToolCallRecord]
    duration_ms: float
    model_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class AgentRuntime:
    """Runs tasks for one Agent."""

    def __init__(
        self,
        agent: Agent,
        *,
        choice: ModelChoice,
        model: PydanticAIModel,
        tools: ToolEnvironment,
        history: HistoryStore | None = None,
        stream_text: bool = False,
        budget: TaskBudget | None = None,
    ) -> None:
        self.agent = agent
        self.stream_text = stream_text
        self.choice = choice
        self.history = history
        self.budget = budget or TaskBudget()
        self.key = f"{agent.metadata.namespace or 'default'}/{agent.metadata.name}"
        self._turns: dict[str, _Turn] = {}
        self.observers: list[Callable[[RunOutcome], None]] = []  # told of every finished run
        self.timing = ModelTiming()  # its observers are told the seconds of every model request
        self._tracing = current_tracing()
        self._instrumentation = instrumentation()  # given to the runs that are recorded
        prompt = agent.spec.system_prompt or DEFAULT_SYSTEM_PROMPT.format(name=agent.metadata.name)
        self._agent: PydanticAgent[RunDeps, str] = PydanticAgent(
            model,
            deps_type=RunDeps,
            tools=build_tools(agent.spec.tools, tools),
            toolsets=list(tools.toolsets),
            instructions=prompt,
            name=agent.metadata.name,
            capabilities=[self.timing],
        )

    def history_key(self, conversation: str) -> str:
        """Where a conversation's history is kept: ``namespace/agent`` for the default one (so
        histories written before conversations existed stay readable), else
        ``namespace/agent/conversation``."""
        if conversation == DEFAULT_CONVERSATION:
            return self.key
        return f"{self.key}/{conversation}"

    async def run(
        self,
        task: str,
        emit: EventSink = discard,
        *,
        conversation: str = DEFAULT_CONVERSATION,
        budget: TaskBudget | None = None,
        chain: tuple[str, ...] = (),
        task_id: str | None = None,
    ) -> RunOutcome:
        """Run one task; a delegated one comes with its caller's ``chain`` and what is left of
        the caller's ``budget``. A durable task's ``task_id`` names its subtasks (a rerun of it
        finds them again, :mod:`agentkube.runtime.queued_team`)."""
        turn = self._turns.setdefault(conversation, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                return await self._run(
                    task,
                    emit,
                    conversation,
                    budget or self.budget,
                    (*chain, self.agent.metadata.name),
                    task_id=task_id,
                )
        finally:
            turn.users -= 1
            if not turn.users:  # the last one out forgets the conversation's lock
                del self._turns[conversation]

    async def _run(
        self,
        task: str,
        emit: EventSink,
        conversation: str,
        budget: TaskBudget,
        chain: tuple[str, ...],
        *,
        task_id: str | None = None,
    ) -> RunOutcome:
        started = time.perf_counter()
        recorder = ToolRecorder(emit=emit)
        emit(RunEvent(kind="run.started", data={"task": task, "model": self.choice.label}))
        key = self.history_key(conversation)
        history = await self.history.load(key) if self.history else []
        try:
            with self._translate_model_errors(budget):
                async with asyncio.timeout(budget.timeout_s):
                    deps = RunDeps(
                        recorder=recorder,
                        chain=chain,
                        task_id=task_id,
                        max_requests=budget.max_model_requests,
                        deadline=time.monotonic() + budget.timeout_s,
                    )
                    output, new_messages, usage = await self._loop(
                        task, history, deps, budget, emit, conversation_key=key
                    )
        except TimeoutError as e:
            raise TaskLimitReached(
                f"the task ran past its {budget.timeout_s:g} s timeout and was cancelled; "
                "raise --task-timeout or split the task"
            ) from e
        if self.history is not None:
            await self.history.append(key, new_messages)
        outcome = RunOutcome(
            agent=self.agent.metadata.name,
            conversation=conversation,
            output=output,
            model=self.choice.label,
            model_note=self.choice.note,
            tool_calls=recorder.calls,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            model_requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        for observe in self.observers:
            observe(outcome)
        return outcome

    @contextmanager
    def _translate_model_errors(self, budget: TaskBudget) -> Iterator[None]:
        try:
            yield
        except UsageLimitExceeded as e:
            raise TaskLimitReached(
                f"the task reached its limit of {budget.max_model_requests} model requests "
                f"({e}); raise --max-requests or simplify the task"
            ) from e
        except ModelConnectionError as e:
            raise ModelUnreachable(
                f"model endpoint {self.choice.base_url} is unreachable ({e.message}); check the "
                "server runs and --base-url / AGENTKUBE_MODEL_BASE_URL / the Model's endpoint.url"
            ) from e
        except ModelHTTPError as e:
            raise ModelRequestFailed(
                f"model endpoint {self.choice.base_url} answered HTTP {e.status_code} for model "
                f"{self.choice.model_id!r}: {str(e.body)[:200]}"
            ) from e
        except ModelAPIError as e:
            raise ModelRequestFailed(f"model request failed: {e.message}") from e

    async def _loop(
        self,
        task: str,
        history: list[ModelMessage],
        deps: RunDeps,
        budget: TaskBudget,
        emit: EventSink,
        *,
        conversation_key: str,
    ) -> tuple[str, list[ModelMessage], RunUsage]:
        limits = UsageLimits(request_limit=budget.max_model_requests)
        # A task the sampler leaves out runs without pydantic-ai's instrumentation, which does
        # most of its work whether or not its spans are recorded.
        with self._tracing.task(f"invoke_agent {self.agent.metadata.name}") as recorded:
            async with self._agent.iter(
                task,
                message_history=history or None,
                deps=deps,
                usage_limits=limits,
                conversation_id=None if history else conversation_key,  # gen_ai.conversation.id
                capabilities=self._instrumentation if recorded else None,
            ) as run:
                await self._drive(run, emit)
        result = run.result
        assert result is not None  # the iteration above ran to End
        return result.output, result.new_messages(), result.usage

    async def _drive(self, run: AgentRun[RunDeps, str], emit: EventSink) -> None:
        """Step ``run`` to its end, telling ``emit`` of each model request and response."""
        async for node in run:
            if PydanticAgent.is_model_request_node(node):
                emit(RunEvent(kind="model.request", data={"model": self.choice.label}))
                if self.stream_text:
                    async with node.stream(run.ctx) as events:
                        async for event in events:
                            text = _text_of(event)
                            if text:
                                emit(RunEvent(kind="text.delta", data={"text": text}))
            elif PydanticAgent.is_call_tools_node(node):
                calls = [p.tool_name for p in node.model_response.tool_calls]
                emit(RunEvent(kind="model.response", data={"tool_calls": calls}))


def instrumentation() -> list[AbstractCapability[Any]]:
    """pydantic-ai's own OpenTelemetry spans (``invoke_agent``, ``chat``, ``execute_tool``) on
    this process's tracer provider when tracing is on (none when off); prompts, answers and
    tool arguments only on opt-in. Given per run, to the runs that are recorded."""
    tracing = current_tracing()
    if tracing.provider is None:
        return []
    settings = InstrumentationSettings(
        tracer_provider=tracing.provider,
        include_content=tracing.capture_content,
        include_binary_content=tracing.capture_content,
        include_model_request_parameters=tracing.capture_content,
    )
    return [Instrumentation(settings=settings)]


def _text_of(event: object) -> str | None:
    """The answer text a streamed event carries, if any."""
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return None
