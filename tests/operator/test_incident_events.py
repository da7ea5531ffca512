"""Agents' incidents become Warning Events on the Agents: the real NamespaceMemory over a real
``redis-server`` with an admin password (as deploy/memory's), agents recording as their
namespace's ACL user, and the recording writer standing where the API server would be. The
same path runs on the real API server in test_incident_events_cluster.py."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentkube.memory.state.redis import RedisState
from agentkube.memory.team_streams import INCIDENT_GROUP, incident_stream
from agentkube.operator.cache import Cache
from agentkube.operator.incident_events import QUIET_S, IncidentEvents
from agentkube.operator.memory import SECRET_NAME, URL_KEY
from agentkube.operator.memory_access import NamespaceMemory
from agentkube.operator.reconciling import Reconciler
from agentkube.runtime.incidents import IncidentKind, IncidentStream
from agentkube.runtime.task_queue import RedisTaskQueue, TaskState
from tests.memory.servers import RedisServer
from tests.operator.conftest import agent
from tests.operator.test_memory_access import RecordingApi, with_memory

JSON = dict[str, Any]


@dataclass(frozen=True)
class Posted:
    agent: str
    type: str
    reason: str
    message: str


class EventsApi(RecordingApi):
    """The recording API, also keeping every Event it is asked to post."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Posted] = []

    async def post_event(self, owner: JSON, *, type: str, reason: str, message: str) -> None:
        await super().post_event(owner, type=type, reason=reason, message=message)
        assert owner["kind"] == "Agent" and owner["apiVersion"] == "ai.openvn/v1"
        self.events.append(Posted(owner["metadata"]["name"], type, reason, message))


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    namespace: str
    cache: Cache
    api: EventsApi
    memory: NamespaceMemory
    reconciler: Reconciler
    clock: Clock = field(default_factory=Clock)
    agents: dict[str, RedisState] = field(default_factory=dict)

    def events(self, **limits: Any) -> IncidentEvents:
        return IncidentEvents(
            cache=self.cache,
            source=self.memory,
            writer=self.api,
            interval_s=1.0,
            clock=self.clock,
            **limits,
        )

    async def agent(self, name: str) -> RedisState:
        """An Agent, reconciled (its namespace's user ensured), connected as that user."""
        if self.cache.get("Agent", self.namespace, name) is None:  # seen as the watch sees it
            body = agent(name=name).model_dump(by_alias=True, exclude_none=True, mode="json")
            body["metadata"].update(namespace=self.namespace, resourceVersion="1")
            self.cache.observe(body, "Agent")
        assert await self.reconciler.reconcile("Agent", self.namespace, name) is False
        secret = self.cache.get("Secret", self.namespace, SECRET_NAME)
        assert secret is not None
        url = base64.b64decode(secret["data"][URL_KEY]).decode()
        assert url.startswith(f"redis://agentkube-{self.namespace}:")  # not the admin
        store = self.agents.setdefault(name, RedisState(url, self.namespace))
        return store

    async def record(self, agent: str, kind: IncidentKind, task: str, message: str) -> None:
        store = await self.agent(agent)
        await IncidentStream(store.client, f"agentkube:{self.namespace}:", agent).record(
            kind, task, message
        )


@pytest.fixture
async def setup(redis_with_admin_password: RedisServer) -> AsyncIterator[Setup]:
    api = EventsApi()
    reconciler, memory, cache = with_memory(redis_with_admin_password.port, api)
    setup = Setup(f"inc-{uuid.uuid4().hex[:8]}", cache, api, memory, reconciler)
    yield setup
    for store in setup.agents.values():
        await store.aclose()
    await memory.aclose()


async def test_a_real_dead_letter_becomes_a_warning_event_naming_the_task(setup: Setup) -> None:
    store = await setup.agent("coder")
    queue = RedisTaskQueue(
        store.client, f"agentkube:{setup.namespace}:", "coder", claim_idle_s=0.05, max_deliveries=1
    )
    task = TaskState(
        id=uuid.uuid4().hex, status="queued", task="x", conversation="c", created_at=0.0
    )
    await queue.submit(task)
    first = await queue.take("replica-1", 1.0)
    assert first is not None and await queue.begin("replica-1", first) is not None
    await asyncio.sleep(0.1)  # ... replica-1 dies; a second delivery is one too many
    second = await queue.take("replica-2", 1.0)
    assert second is not None and await queue.begin("replica-2", second) is None
    events = setup.events()
    assert await events.poll() == 1
    (event,) = setup.api.events
    assert (event.agent, event.type, event.reason) == ("coder", "Warning", "TaskDeadLettered")
    assert event.message.startswith(f"task {task.id}: dead-lettered: delivered 1 times")
    assert await events.poll() == 0  # read once, posted once


async def test_each_reason_of_each_agent_is_its_own_event(setup: Setup) -> None:
    await setup.record("planner", "DelegationFailed", "t-1", "delegation to agent 'coder': boom")
    await setup.record("coder", "SandboxRefused", "t-2", "the sandbox gateway refused us")
    await setup.record("coder", "TaskDeadLettered", "t-3", "dead-lettered: delivered 5 times")
    assert await setup.events().poll() == 3
    assert sorted((e.agent, e.reason, e.message) for e in setup.api.events) == [
        ("coder", "SandboxRefused", "task t-2: the sandbox gateway refused us"),
        ("coder", "TaskDeadLettered", "task t-3: dead-lettered: delivered 5 times"),
        ("planner", "DelegationFailed", "task t-1: delegation to agent 'coder': boom"),
    ]
    assert {e.type for e in setup.api.events} == {"Warning"}


async def test_a_restarted_operator_goes_on_where_it_stopped(
    setup: Setup, redis_with_admin_password: RedisServer
) -> None:
    await setup.record("planner", "DelegationFailed", "t-1", "first")
    assert await setup.events().poll() == 1
    await setup.memory.aclose()  # the operator restarts: a new connection, nothing in memory
    restarted = NamespaceMemory(setup.memory.server, cache=setup.cache, api=setup.api)
    setup.memory = restarted
    try:
        again = setup.events()
        assert await again.poll() == 0  # the group in Redis remembers what was read
        await setup.record("planner", "DelegationFailed", "t-2", "second")
        assert await again.poll() == 1
    finally:
        await restarted.aclose()
    assert [e.message for e in setup.api.events] == ["task t-1: first", "task t-2: second"]


async def test_an_incident_recorded_before_the_operator_first_reads_is_posted(
    setup: Setup,
) -> None:
    """The stream appears with its first incident; the group made then starts before it."""
    await setup.record("planner", "DelegationFailed", "t-1", "before anyone read")
    await setup.record("planner", "DelegationFailed", "t-2", "also before")
    assert await setup.events().poll() == 1
    (event,) = setup.api.events
    assert event.message.startswith("2 incidents since the last Event (tasks t-1, t-2)")


async def test_a_flood_of_incidents_is_a_few_counted_events(setup: Setup) -> None:
    store = await setup.agent("coder")
    incidents = IncidentStream(store.client, f"agentkube:{setup.namespace}:", "coder")
    for i in range(300):
        await incidents.record("SandboxRefused", f"t{i}", f"refusal {i}")
    events = setup.events()
    assert await events.poll() == 1
    assert setup.api.events[0].message == (
        "300 incidents since the last Event (tasks t0, t1, t2 and 297 more); "
        "the latest, task t299: refusal 299"
    )
    for i in range(300, 350):  # more, within the quiet time: counted, not posted
        await incidents.record("SandboxRefused", f"t{i}", f"refusal {i}")
    setup.clock.now += QUIET_S / 2
    assert await events.poll() == 0
    setup.clock.now += QUIET_S / 2
    assert await events.poll() == 1
    assert setup.api.events[1].message.startswith("50 incidents since the last Event (tasks t300")
    assert setup.api.writes["create Event"] == 2


async def test_at_most_so_many_events_per_read_the_rest_on_the_next(setup: Setup) -> None:
    for i in range(5):
        await setup.record(f"agent-{i}", "DelegationFailed", f"t{i}", "boom")
    events = setup.events(max_per_poll=3)
    assert await events.poll() == 3
    assert await events.poll() == 2  # held back, not lost
    assert sorted(e.agent for e in setup.api.events) == [f"agent-{i}" for i in range(5)]


async def test_what_an_agent_writes_is_not_trusted(
    setup: Setup, redis_with_admin_password: RedisServer
) -> None:
    store = await setup.agent("mallory")
    stream = incident_stream(setup.namespace, "mallory")
    await store.client.xadd(stream, {"kind": "Scheduled", "task": "t", "message": "fake"})
    await store.client.xadd(
        stream, {"kind": "SandboxRefused", "task": "x" * 500, "message": b"\xff" + b"y" * 5000}
    )
    assert await setup.events().poll() == 1
    (event,) = setup.api.events
    assert event.reason == "SandboxRefused"
    assert event.message.startswith("task " + "x" * 64 + ": \ufffdyyy")
    assert len(event.message) < 700


async def test_a_deleted_agent_gets_no_event(setup: Setup) -> None:
    await setup.record("planner", "DelegationFailed", "t-1", "boom")
    setup.cache.forget("Agent", setup.namespace, "planner")
    assert await setup.events().poll() == 0
    assert setup.api.events == []


async def test_the_operators_group_is_on_the_agents_stream(
    setup: Setup, redis_with_admin_password: RedisServer
) -> None:
    await setup.record("planner", "DelegationFailed", "t-1", "boom")
    await setup.events().poll()
    store = setup.agents["planner"]
    groups = await store.client.xinfo_groups(incident_stream(setup.namespace, "planner"))
    assert [g["name"] for g in groups] == [INCIDENT_GROUP.encode()]
    assert groups[0]["pending"] == 0  # NOACK: nothing left to acknowledge
