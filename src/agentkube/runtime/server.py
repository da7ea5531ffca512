"""The agent's HTTP API (what the operator runs in each agent pod).

    POST /v1/tasks                 submit a task -> 202 {id, status}
    GET  /v1/tasks/{id}            status and, when done, the result
    GET  /v1/tasks/{id}/events     the run's events as server-sent events (replayed, then live)
    GET  /v1/agent                 who this agent is
    GET  /healthz /readyz /metrics liveness, readiness, Prometheus
    GET  /openapi.json /docs       the API description
    GET  /.well-known/agent-card.json, POST /a2a   A2A (with ``a2a``; see runtime/a2a.py)

Tasks run in the background, at most ``max_concurrent`` at once; at most ``max_queued`` wait,
beyond that submissions get 429. Finished tasks are kept (newest ``max_kept``) for reading.
With ``durable`` (``--redis``) the tasks go through the agent's shared queue instead
(:mod:`agentkube.runtime.handoff`): any replica runs them, any replica answers for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field

from agentkube import __version__
from agentkube.api.loading import describe_errors
from agentkube.background import BackgroundTasks
from agentkube.bounded_bodies import BoundedBodies
from agentkube.errors import AgentkubeError
from agentkube.runtime.a2a import A2AMount
from agentkube.runtime.agent import AgentRuntime, RunOutcome
from agentkube.runtime.events import RunEvent
from agentkube.runtime.handoff import DurableTasks
from agentkube.runtime.task_queue import TaskState
from agentkube.telemetry.propagation import continued

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a task is at most 100,000 characters; JSON escaping stays under this
TaskStatus = Literal["queued", "running", "succeeded", "failed"]
RuntimeFactory = Callable[[], AbstractAsyncContextManager[AgentRuntime]]
DurableFactory = Callable[[AgentRuntime], AbstractAsyncContextManager[DurableTasks]]


# model answers take from well under a second (a small local model) to minutes (a long one)
MODEL_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

CONVERSATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class TaskRequest(BaseModel):
    task: str = Field(..., min_length=1, max_length=100_000, description="what the agent should do")
    conversation: str | None = Field(
        None,
        pattern=CONVERSATION_PATTERN,
        description="continue this conversation (its history); omitted: a new conversation, "
        "named in the answer",
    )


class TaskView(BaseModel):
    id: str
    status: TaskStatus
    task: str
    conversation: str
    created_at: float
    finished_at: float | None = None
    result: RunOutcome | None = None
    error: str | None = None


class AgentInfo(BaseModel):
    name: str
    model: str
    tools: list[str]
    memory: str
    version: str


@dataclass
class TaskRecord:
    view: TaskView
    events: list[RunEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: RunEvent) -> None:
        self.events.append(event)
        self.changed.set()

    @property
    def done(self) -> bool:
        return self.view.status in ("succeeded", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "agentkube_tasks", "Tasks finished, by outcome", ["outcome"], registry=self.registry
        )
        self.duration = Histogram(
            "agentkube_task_duration_seconds", "Task run time", registry=self.registry
        )
        self.tool_calls = Counter(
            "agentkube_tool_calls",
            "Tool calls, by tool and success",
            ["tool", "ok"],
            registry=self.registry,
        )
        self.in_flight = Gauge("agentkube_tasks_in_flight", "Tasks running", registry=self.registry)
        self.tokens = Counter(
            "agentkube_model_tokens",
            "Model tokens spent by this agent's runs, by model and kind (input, output)",
            ["model", "kind"],
            registry=self.registry,
        )
        self.model_requests = Counter(
            "agentkube_model_requests",
            "Model requests made by this agent's runs, by model",
            ["model"],
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "agentkube_model_request_seconds",
            "Model request latency (sent to answered, a streamed answer read to its end), by model",
            ["model"],
            buckets=MODEL_BUCKETS_S,
            registry=self.registry,
        )

    def watch(self, runtime: AgentRuntime) -> None:
        """Count the runtime's runs, and time its model requests as they end."""
        runtime.observers.append(self.observe)
        runtime.timing.observers.append(self.model_seconds.labels(runtime.choice.label).observe)

    def finished(self, state: TaskState) -> None:
        """Count a task of the shared queue this replica ran (as ``_finish`` counts its own)."""
        self.tasks.labels(state.status).inc()
        if state.started_at is not None and state.finished_at is not None:
            self.duration.observe(max(0.0, state.finished_at - state.started_at))

    def observe(self, outcome: RunOutcome) -> None:
        """Count one finished run of the agent (an HTTP task, a queued one, a subtask)."""
        for call in outcome.tool_calls:
            self.tool_calls.labels(call.name, str(call.ok).lower()).inc()
        self.model_requests.labels(outcome.model).inc(own_model_requests(outcome))
        self.tokens.labels(outcome.model, "input").inc(outcome.input_tokens)
        self.tokens.labels(outcome.model, "output").inc(outcome.output_tokens)


def own_model_requests(outcome: RunOutcome) -> int:
    """The requests the run's own model made: a subtask's are charged to its caller's budget
    (``RunOutcome.model_requests`` holds them) but were made, and are counted, by the executor."""
    delegated = sum(
        int(c.delegated.get("model_requests", 0)) for c in outcome.tool_calls if c.delegated
    )
    return max(0, outcome.model_requests - delegated)


class TaskManager:
    def __init__(
        self,
        runtime: AgentRuntime,
        metrics: Metrics,
        *,
        max_concurrent: int,
        max_queued: int,
        max_kept: int,
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.tasks: OrderedDict[str, TaskRecord] = OrderedDict()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_queued, self._max_kept = max_queued, max_kept
        self._running = BackgroundTasks()

    def submit(self, text: str, conversation: str | None = None) -> TaskRecord:
        waiting = sum(1 for r in self.tasks.values() if r.view.status == "queued")
        if waiting >= self._max_queued:
            raise HTTPException(429, f"{waiting} tasks are already queued; retry later")
        task_id = uuid.uuid4().hex
        view = TaskView(
            id=task_id,
            status="queued",
            task=text,
            conversation=conversation or task_id,
            created_at=time.time(),
        )
        record = TaskRecord(view)
        self.tasks[record.view.id] = record
        self._evict()
        self._running.spawn(self._run(record), name=f"task-{record.view.id}")
        return record

    async def _run(self, record: TaskRecord) -> None:
        async with self._slots:
            record.view.status = "running"
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                outcome = await self.runtime.run(
                    record.view.task, emit=record.add, conversation=record.view.conversation
                )
            except AgentkubeError as e:
                self._finish(record, "failed", error=str(e))
            except Exception as e:
                log.exception("task %s of agent %s failed", record.view.id, self.runtime.key)
                self._finish(record, "failed", error=f"internal error: {type(e).__name__}: {e}")
            else:
                self._finish(record, "succeeded", result=outcome)
            finally:
                self.metrics.in_flight.dec()
                self.metrics.duration.observe(time.perf_counter() - started)

    def _finish(
        self,
        record: TaskRecord,
        status: TaskStatus,
        *,
        result: RunOutcome | None = None,
        error: str | None = None,
    ) -> None:
        record.view.status, record.view.result, record.view.error = status, result, error
        record.view.finished_at = time.time()
        self.metrics.tasks.labels(status).inc()
        record.add(
            RunEvent(
                kind="run.finished" if result else "run.failed",
                data={"status": status, "error": error},
            )
        )

    def _evict(self) -> None:
        while len(self.tasks) > self._max_kept:
            oldest = next((k for k, r in self.tasks.items() if r.done), None)
            if oldest is None:
                return
            del self.tasks[oldest]

    def get(self, task_id: str) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            raise HTTPException(404, f"no task {task_id!r}; it never existed or was evicted")
        return record

    async def shutdown(self) -> None:
        await self._running.cancel()


async def event_stream(record: TaskRecord) -> AsyncIterator[str]:
    """Server-sent events: everything so far, then new events until the task is done."""
    sent = 0
    while True:
        record.changed.clear()
        for event in record.events[sent:]:
            yield f"event: {event.kind}\ndata: {json.dumps(event.model_dump(mode='json'))}\n\n"
        sent = len(record.events)
        if record.done:
            return
        try:
            await asyncio.wait_for(record.changed.wait(), timeout=15)
        except TimeoutError:
            yield ": keep-alive\n\n"


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """422 naming the field, never echoing the input (FastAPI's default handler quotes all of
    it, and answers 500 when it holds a lone surrogate it cannot encode)."""
    assert isinstance(error, RequestValidationError)
    detail = f"invalid request: {describe_errors(error.errors())}"
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(  # noqa: C901 - one small closure per route
    open_runtime: RuntimeFactory,
    *,
    max_concurrent: int = 4,
    max_queued: int = 100,
    max_kept: int = 1000,
    durable: DurableFactory | None = None,
    a2a: A2AMount | None = None,
) -> FastAPI:
    metrics = Metrics()
    state: dict[str, TaskManager] = {}
    shared: dict[str, DurableTasks] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime() as runtime:
            metrics.watch(runtime)
            state["tasks"] = TaskManager(
                runtime,
                metrics,
                max_concurrent=max_concurrent,
                max_queued=max_queued,
                max_kept=max_kept,
            )
            log.info("agent %s ready (model %s)", runtime.key, runtime.choice.label)
            async with AsyncExitStack() as stack:
                if durable is not None:
                    shared["tasks"] = await stack.enter_async_context(durable(runtime))
                    shared["tasks"].observers.append(metrics.finished)
                try:
                    yield
                finally:
                    shared.pop("tasks", None)
                    await state.pop("tasks").shutdown()

    app = FastAPI(title="agentkube agent", version=__version__, lifespan=lifespan)
    app.add_middleware(BoundedBodies, max_bytes=MAX_BODY_BYTES)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    def manager() -> TaskManager:
        if "tasks" not in state:
            raise HTTPException(503, "the agent is not ready")
        return state["tasks"]

    @app.post("/v1/tasks", status_code=202, response_model=TaskView)
    async def submit(request: TaskRequest, http: Request) -> TaskView:
        tasks = manager()
        with continued(http.headers):  # the task continues the caller's trace, if it sent one
            if "tasks" in shared:
                queued = await shared["tasks"].submit(request.task, request.conversation)
                return TaskView.model_validate(queued.model_dump())
            return tasks.submit(request.task, request.conversation).view

    @app.get("/v1/tasks", response_model=list[TaskView])
    async def list_tasks() -> list[TaskView]:
        return [r.view for r in manager().tasks.values()]

    @app.get("/v1/tasks/{task_id}", response_model=TaskView)
    async def read(task_id: str) -> TaskView:
        tasks = manager()
        if "tasks" in shared:
            found = await shared["tasks"].read(task_id)
            if found is None:
                raise HTTPException(404, f"no task {task_id!r}; it never existed or expired")
            return TaskView.model_validate(found.model_dump())
        return tasks.get(task_id).view

    @app.get("/v1/tasks/{task_id}/events", response_class=StreamingResponse)
    async def events(task_id: str) -> StreamingResponse:
        record = manager().get(task_id)
        return StreamingResponse(
            event_stream(record),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @app.get("/v1/agent", response_model=AgentInfo)
    async def info() -> AgentInfo:
        runtime = manager().runtime
        spec = runtime.agent.spec
        return AgentInfo(
            name=runtime.agent.metadata.name,
            model=runtime.choice.label,
            tools=list(spec.tools),
            memory=spec.memory,
            version=__version__,
        )

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz() -> str:
        manager()
        return "ready"

    @app.get("/metrics")
    async def prometheus() -> Response:
        page = generate_latest(metrics.registry)
        if "tasks" in shared:
            page += generate_latest(shared["tasks"].metrics.registry)
        return Response(page, media_type=CONTENT_TYPE_LATEST)

    if a2a is not None:
        a2a.mount(app, lambda: manager().runtime, lambda: shared.get("tasks"))
    return app
