"""Incidents people should see: what an agent records for the operator to post as Events.

An agent pod holds no Kubernetes rights, so it cannot post Events itself. Instead it appends
each incident — a task dead-lettered, a delegation that failed, a sandbox that refused — to a
bounded Redis stream of its own (:func:`~agentkube.memory.team_streams.incident_stream`: under
its namespace's key prefix, which its ACL user may write; ``XADD … MAXLEN ~``
:data:`INCIDENTS_KEPT`). The operator reads the streams over its admin connection and posts
Warning Events on the Agents (:mod:`agentkube.operator.incident_events`).

Recording is best effort: a Redis that is down or refuses costs a log line, never the task.
Without Redis (no shared memory) nothing is recorded: there is no one to read it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from agentkube.memory.team_streams import INCIDENTS, queue_base

log = logging.getLogger(__name__)

IncidentKind = Literal["TaskDeadLettered", "DelegationFailed", "SandboxRefused"]
INCIDENTS_KEPT = 500  # per agent; the operator reads them every incidentSeconds
MESSAGE_CHARS = 400


class Incidents(Protocol):
    async def record(self, kind: IncidentKind, task_id: str | None, message: str) -> None:
        """Record one incident of ``task_id`` (None: a run no task record names); never raises."""
        ...


class NoIncidents:
    """Records nothing (no shared Redis, or a run outside ``agent serve``)."""

    async def record(self, kind: IncidentKind, task_id: str | None, message: str) -> None:
        return None


NO_INCIDENTS = NoIncidents()


def one_line(message: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class IncidentStream:
    """One agent's incident stream in Redis (``client`` is redis-py asyncio, bytes replies)."""

    def __init__(self, client: Any, prefix: str, agent: str, *, kept: int = INCIDENTS_KEPT) -> None:
        self._redis = client
        self.agent = agent
        self.key = queue_base(prefix, agent) + INCIDENTS
        self._kept = kept

    async def record(self, kind: IncidentKind, task_id: str | None, message: str) -> None:
        fields = {"kind": kind, "task": task_id or "", "message": one_line(message)}
        try:
            await self._redis.xadd(self.key, fields, maxlen=self._kept, approximate=True)
        except Exception as e:  # best effort: the incident is in the log line instead
            log.warning(
                "agent %s: incident %s of task %s not recorded (%s): %s",
                self.agent,
                kind,
                task_id,
                e,
                fields["message"],
            )
        else:
            log.info("agent %s: %s of task %s: %s", self.agent, kind, task_id, fields["message"])


IncidentsOf = Callable[[str], Incidents]
"""The incident recorder of an agent, by name."""


def no_incidents(_agent: str) -> Incidents:
    return NO_INCIDENTS


@asynccontextmanager
async def open_incidents(
    *, redis_url: str | None, data_dir: Path | None = None
) -> AsyncIterator[IncidentsOf]:
    """Each agent's :class:`IncidentStream` on the agents' Redis (``redis_url`` or
    ``AGENTKUBE_REDIS_URL``, in the namespace of ``AGENTKUBE_NAMESPACE``); without Redis,
    recorders that record nothing."""
    from agentkube.memory.settings import MemorySettings, open_state_store
    from agentkube.memory.state.redis import RedisState
    from agentkube.memory.tenancy import key_prefix

    settings = MemorySettings.from_env(data_dir=data_dir, redis_url=redis_url)
    if not settings.redis_url:
        yield no_incidents
        return
    store = open_state_store(settings)
    assert isinstance(store, RedisState)
    client, prefix = store.client, key_prefix(store.namespace)
    streams: dict[str, IncidentStream] = {}
    try:
        yield lambda agent: streams.setdefault(agent, IncidentStream(client, prefix, agent))
    finally:
        await store.aclose()
