"""A2A (Agent2Agent, spec 1.0) on every agent, with the official ``a2a-sdk``.

Serving: :func:`mount_a2a` adds the agent card at ``/.well-known/agent-card.json`` and the
JSON-RPC endpoint at ``/a2a`` (``SendMessage``, ``SendStreamingMessage``, ``GetTask``,
``CancelTask``, …) to the agent's FastAPI app. The SDK keeps the A2A task objects; our
:class:`RuntimeExecutor` runs each message as one task of the agent — through the durable queue
when the agent has one (``--redis``), so an A2A task survives the replica that accepted it.

Calling: :class:`A2ATeam` is a :class:`~agentkube.runtime.delegation.Delegator` that hands a
subtask to another agent's A2A endpoint — in a cluster its Service, ``http://NAME:8080`` — and
reads the answer (the task's artifacts) back. Any A2A client can call an agentkube agent, and
an agentkube planner can call any A2A agent. The caller's W3C trace context travels in the
message metadata (``traceparent``, ``tracestate``): sending is an ``a2a.send_message`` client
span, running it an ``a2a.execute`` server span of the same trace; each subtask is an A2A context
of its own, whose id both spans name (``gen_ai.conversation.id``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import (
    get_artifact_text,
    get_message_text,
    new_task_from_user_message,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    add_a2a_routes_to_fastapi,
    create_agent_card_routes,
    create_jsonrpc_routes,
)
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from fastapi import FastAPI

from agentkube import __version__
from agentkube.api.models import Agent
from agentkube.runtime.agent import DEFAULT_SYSTEM_PROMPT, AgentRuntime, RunOutcome, TaskBudget
from agentkube.runtime.delegation import Subtask
from agentkube.runtime.errors import DelegationFailed
from agentkube.runtime.events import EventSink
from agentkube.runtime.handoff import DurableTasks
from agentkube.runtime.recording import ToolCallRecord
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import continued, inject, trace_fields

log = logging.getLogger(__name__)

A2A_PATH = "/a2a"
POLL_S = 0.2


def agent_card(agent: Agent, url: str) -> AgentCard:
    """The card of ``agent`` served at ``url`` (its JSON-RPC endpoint)."""
    name = agent.metadata.name
    about = agent.spec.system_prompt or DEFAULT_SYSTEM_PROMPT.format(name=name)
    return AgentCard(
        name=name,
        description=about,
        version=__version__,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id=name,
                name=name,
                description=about,
                tags=[agent.spec.role, *agent.spec.tools],
            )
        ],
    )


class RuntimeExecutor(AgentExecutor):
    """Runs an A2A message as one task of the agent; the answer is the task's artifact."""

    def __init__(
        self,
        runtime: Callable[[], AgentRuntime],
        durable: Callable[[], DurableTasks | None],
    ) -> None:
        self._runtime = runtime
        self._durable = durable

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.update_status(TaskState.TASK_STATE_WORKING)
        metadata = dict(context.message.metadata) if context.message.metadata else {}
        attributes = {spans.RPC_SYSTEM: "a2a", spans.CONVERSATION_ID: context.context_id}
        try:
            with (
                continued(trace_fields(metadata)),
                spans.span("a2a.execute", kind=spans.SpanKind.SERVER, attributes=attributes),
            ):
                outcome = await self._run(
                    context.get_user_input(), _caller(context), context.context_id
                )
        except Exception as e:  # the A2A task fails; the server goes on
            await updater.update_status(
                TaskState.TASK_STATE_FAILED, message=new_text_message(str(e), role=Role.ROLE_AGENT)
            )
            return
        await updater.add_artifact([new_text_part(outcome.output)], name="answer")
        await updater.add_artifact(
            [new_text_part(outcome.model_dump_json(), media_type="application/json")],
            name="outcome",
        )
        await updater.update_status(TaskState.TASK_STATE_COMPLETED)

    async def _run(
        self, text: str, caller: tuple[tuple[str, ...], TaskBudget | None], context_id: str
    ) -> RunOutcome:
        """Run in the A2A context's conversation: tasks of one context continue one history,
        and unrelated callers' tasks neither share a history nor wait for each other."""
        durable = self._durable()
        chain, budget = caller
        if durable is None or chain:  # a subtask runs here, in its caller's chain and budget
            return await self._runtime().run(
                text, conversation=context_id, chain=chain, budget=budget
            )
        state = await durable.submit(text, context_id)
        deadline = time.monotonic() + self._runtime().budget.timeout_s + 60
        while time.monotonic() < deadline:
            found = await durable.read(state.id)
            if found is not None and found.done:
                if found.status != "succeeded" or found.result is None:
                    raise DelegationFailed(found.error or "the task failed")
                return RunOutcome.model_validate(found.result)
            await asyncio.sleep(POLL_S)
        raise DelegationFailed(f"task {state.id} did not finish in time")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.update_status(TaskState.TASK_STATE_CANCELED)


def _caller(context: RequestContext) -> tuple[tuple[str, ...], TaskBudget | None]:
    """The delegation chain and budget an agentkube caller sent along (see :func:`_metadata`)."""
    metadata = context.message.metadata if context.message is not None else None
    if not metadata:
        return (), None
    fields = dict(metadata)
    chain = tuple(str(a) for a in fields.get("agentkube.chain") or ())
    try:
        budget = TaskBudget(**json.loads(str(fields.get("agentkube.budget") or "{}")))
    except (TypeError, ValueError):
        budget = None
    return chain, budget


@dataclass(frozen=True, kw_only=True)
class A2AMount:
    """What the agent's app needs to serve A2A: the Agent and the URL others reach it by."""

    agent: Agent
    public_url: str

    def mount(
        self,
        app: FastAPI,
        runtime: Callable[[], AgentRuntime],
        durable: Callable[[], DurableTasks | None],
    ) -> None:
        card = agent_card(self.agent, self.public_url.rstrip("/") + A2A_PATH)
        handler = DefaultRequestHandler(
            agent_executor=RuntimeExecutor(runtime, durable),
            task_store=InMemoryTaskStore(),
            agent_card=card,
        )
        add_a2a_routes_to_fastapi(
            app,
            agent_card_routes=create_agent_card_routes(card),
            jsonrpc_routes=create_jsonrpc_routes(handler, rpc_url=A2A_PATH),
        )


# --------------------------------------------------------------------------- calling


def _outcome_of(task: Task, target: str) -> RunOutcome:
    """Our outcome artifact when the target is an agentkube agent, else its text answer."""
    for artifact in task.artifacts:
        if artifact.name == "outcome":
            return RunOutcome.model_validate_json(get_artifact_text(artifact))
    answer = "\n".join(get_artifact_text(a) for a in task.artifacts)
    return RunOutcome(
        agent=target, output=answer, model="a2a", tool_calls=list[ToolCallRecord](), duration_ms=0
    )


class A2ATeam:
    """Delegates subtasks to agents over A2A, by URL (a Service in a cluster)."""

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        descriptions: Mapping[str, str] | None = None,
        max_depth: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._urls = dict(urls)
        self._descriptions = dict(descriptions or {})
        self._max_depth = max_depth
        self._transport = transport

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def describe(self, target: str) -> str:
        return self._descriptions.get(target, f"the agent {target} at {self._urls.get(target)}")

    async def delegate(self, subtask: Subtask, emit: EventSink) -> RunOutcome:
        url = self._urls.get(subtask.target)
        if url is None:
            raise DelegationFailed(f"no A2A URL is known for agent {subtask.target!r}")
        context_id = uuid.uuid4().hex  # each subtask an A2A context (a conversation) of its own
        attributes = {spans.AGENT_NAME: subtask.target, spans.RPC_SYSTEM: "a2a",
                      spans.SERVER_ADDRESS: url, spans.CONVERSATION_ID: context_id}  # fmt: skip
        with spans.span(
            f"a2a.send_message {subtask.target}", kind=spans.SpanKind.CLIENT, attributes=attributes
        ):
            try:
                return await self._send(url, subtask, context_id)
            except DelegationFailed as e:
                spans.mark_failed(str(e))
                raise

    async def _send(self, url: str, subtask: Subtask, context_id: str) -> RunOutcome:
        timeout = httpx.Timeout(subtask.budget.timeout_s, connect=10)
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as http:
                client = await create_client(
                    url, client_config=ClientConfig(streaming=False, httpx_client=http)
                )
                request = SendMessageRequest(
                    message=Message(
                        role=Role.ROLE_USER,
                        message_id=f"{'-'.join(subtask.chain)}-{time.time_ns()}",
                        context_id=context_id,
                        parts=[Part(text=subtask.task)],
                        metadata=_metadata(subtask),
                    )
                )
                task = await _final_task(client, request)
                await client.close()
        except DelegationFailed:
            raise
        except Exception as e:
            raise DelegationFailed(f"agent {subtask.target!r} at {url}: {e}") from e
        if task.status.state != TaskState.TASK_STATE_COMPLETED:
            reason = get_message_text(task.status.message) if task.HasField("status") else ""
            raise DelegationFailed(
                f"agent {subtask.target!r} ended the task {TaskState.Name(task.status.state)} "
                f"{reason}".strip()
            )
        outcome = _outcome_of(task, subtask.target)
        log.info(
            "delegated to %s in %.0f ms", subtask.target, (time.perf_counter() - started) * 1000
        )
        return outcome


def _metadata(subtask: Subtask) -> dict[str, Any]:
    return {
        **inject(),  # the send span's traceparent: the target's run joins the trace
        "agentkube.chain": list(subtask.chain),
        "agentkube.budget": json.dumps(
            {"max_model_requests": subtask.budget.max_model_requests,
             "timeout_s": subtask.budget.timeout_s}
        ),
    }  # fmt: skip


async def _final_task(client: Any, request: SendMessageRequest) -> Task:
    last: Task | None = None
    async for response in client.send_message(request):
        if response.HasField("task"):
            last = response.task
    if last is None:
        raise DelegationFailed("the agent answered without a task")
    return last
