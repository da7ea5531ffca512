"""Agents' incidents as Warning Events on the Agents: what ``kubectl describe agent`` shows.

An agent pod has no Kubernetes rights; it records its incidents (a task dead-lettered, a
delegation that failed, a sandbox that refused) in a bounded stream of its own in the shared
Redis (:mod:`agentkube.runtime.incidents`). Every ``incidentSeconds`` :class:`IncidentEvents`
reads what is new in the streams of all the Agents it knows — one pipelined round trip over the
operator's admin connection — and posts Events through the reconciler's writer, with the
incident's kind as the reason (``TaskDeadLettered``, ``DelegationFailed``, ``SandboxRefused``)
and the task id in the message.

* **What was read** is a consumer group (``operator``) on each stream, kept by Redis: a
  restarted operator goes on where it stopped and posts nothing twice. It is read with
  ``NOACK``, so an incident read just before a crash may never be posted: Events are at most
  once, like Kubernetes' own.
* **No flood**: per Agent and reason at most one Event every :data:`QUIET_S` seconds; incidents
  in between are counted into the next one ("5 incidents since the last Event … the latest:
  …"), and at most :data:`MAX_EVENTS_PER_POLL` Events are posted per read (the rest wait, still
  counted, for the next). A storm of thousands of incidents costs a few Events a minute.
* What an agent writes is not trusted: an unknown kind is dropped, ids and messages are clipped.

Without shared memory (no ``memory.redis`` in the operator's configuration) there is no stream
to read, and no such Event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentkube.memory.errors import InvalidName, MemoryFailure
from agentkube.memory.team_streams import INCIDENT_GROUP, incident_stream
from agentkube.operator.cache import Cache
from agentkube.operator.memory_access import NotReady

JSON = dict[str, Any]
AgentRef = tuple[str, str]  # namespace, name
log = logging.getLogger(__name__)

REASONS = ("TaskDeadLettered", "DelegationFailed", "SandboxRefused")
QUIET_S = 60.0
MAX_EVENTS_PER_POLL = 20
READ_COUNT = 500  # per stream and read: the runtime keeps about as many
TASKS_NAMED = 3
TASK_ID_CHARS = 64
MESSAGE_CHARS = 600


class Unread(Protocol):
    """:meth:`agentkube.operator.memory_access.NamespaceMemory.unread`."""

    async def unread(
        self, streams: Sequence[str], group: str, count: int
    ) -> dict[str, list[dict[str, str]]]: ...


class EventWriter(Protocol):
    """:meth:`agentkube.operator.applying.Applier.post_event` (the reconciler's writer)."""

    async def post_event(self, owner: JSON, *, type: str, reason: str, message: str) -> None: ...


@dataclass
class _Tally:
    """Incidents of one reason of one Agent not posted yet."""

    count: int = 0
    tasks: list[str] = field(default_factory=list)  # the first few, distinct
    latest_task: str = ""
    latest: str = ""
    since: float = 0.0  # when the first of them was read

    def add(self, task: str, message: str, now: float) -> None:
        if not self.count:
            self.since = now
        self.count += 1
        if task and task not in self.tasks and len(self.tasks) < TASKS_NAMED:
            self.tasks.append(task)
        self.latest_task, self.latest = task, message


def event_message(tally: _Tally) -> str:
    """One incident: ``task T: message``; several: how many, which tasks, the latest."""
    latest = f"task {tally.latest_task}: {tally.latest}" if tally.latest_task else tally.latest
    if tally.count == 1:
        return latest
    named = ", ".join(tally.tasks)
    more = tally.count - len(tally.tasks)
    tasks = f" (tasks {named}{f' and {more} more' if more > 0 else ''})" if named else ""
    return f"{tally.count} incidents since the last Event{tasks}; the latest, {latest}"


class IncidentEvents:
    def __init__(
        self,
        *,
        cache: Cache,
        source: Unread,
        writer: EventWriter,
        interval_s: float,
        quiet_s: float = QUIET_S,
        max_per_poll: int = MAX_EVENTS_PER_POLL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.source = source
        self.writer = writer
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.max_per_poll = max_per_poll
        self._clock = clock
        self._tallies: dict[tuple[AgentRef, str], _Tally] = {}
        self._posted: dict[tuple[AgentRef, str], float] = {}  # when the last Event went out

    async def poll(self) -> int:
        """Read what is new, post what is due; the number of Events posted."""
        agents = self._agents()
        await self._read(agents)
        for key in [k for k in self._tallies if k[0] not in agents]:  # the Agent is gone
            del self._tallies[key]
        for key in [k for k in self._posted if k[0] not in agents]:
            del self._posted[key]
        return await self._post(agents)

    def _agents(self) -> dict[AgentRef, JSON]:
        return {
            ref: body
            for ref, body in self.cache.items("Agent")
            if not body.get("metadata", {}).get("deletionTimestamp")
        }

    async def _read(self, agents: dict[AgentRef, JSON]) -> None:
        streams: dict[str, AgentRef] = {}
        for namespace, name in agents:
            try:
                streams[incident_stream(namespace, name)] = (namespace, name)
            except InvalidName:  # not a name the runtime could have written under
                continue
        if not streams:
            return
        try:
            unread = await self.source.unread(list(streams), INCIDENT_GROUP, READ_COUNT)
        except (MemoryFailure, NotReady) as e:
            log.warning("incidents of %d Agents unread: %s", len(streams), e)
            return
        now = self._clock()
        for stream, entries in unread.items():
            ref = streams[stream]
            for entry in entries:
                reason = entry.get("kind", "")
                if reason not in REASONS:
                    log.info("Agent %s/%s: unknown incident %r dropped", *ref, reason[:40])
                    continue
                task = entry.get("task", "")[:TASK_ID_CHARS]
                message = entry.get("message", "")[:MESSAGE_CHARS]
                self._tallies.setdefault((ref, reason), _Tally()).add(task, message, now)

    async def _post(self, agents: dict[AgentRef, JSON]) -> int:
        now, posted = self._clock(), 0
        due = [
            key
            for key, tally in self._tallies.items()
            if tally.count and now - self._posted.get(key, -float("inf")) >= self.quiet_s
        ]
        due.sort(key=lambda k: self._tallies[k].since)  # the longest waiting first
        for key in due[: self.max_per_poll]:
            ref, reason = key
            tally = self._tallies.pop(key)
            self._posted[key] = now
            await self.writer.post_event(
                agents[ref], type="Warning", reason=reason, message=event_message(tally)
            )
            posted += 1
        if len(due) > self.max_per_poll:
            log.warning(
                "%d incident Events held back for the next read (at most %d per read)",
                len(due) - self.max_per_poll,
                self.max_per_poll,
            )
        return posted

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception:  # the next read may work; the operator goes on
                log.exception("posting the Agents' incidents failed")
