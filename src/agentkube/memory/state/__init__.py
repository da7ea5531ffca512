"""Shared state: conversation sessions, task records and small key/value entries.

A :class:`StateStore` is bound to one namespace (the tenant) when it is made; keys never cross
it. Backends: :class:`~agentkube.memory.state.sqlite.SqliteState` (a file under the data
directory, embedded mode) and :class:`~agentkube.memory.state.redis.RedisState` (a cluster).

Sessions are keyed by agent and conversation id and hold *turns* (opaque bytes; the runtime stores
one run's messages per turn). Retention is bounded on write, not only on read: appending trims a
session to its newest ``max_turns`` turns and (re)starts its time to live, so an idle session
disappears ``ttl_s`` seconds after its last turn and no session grows without bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from agentkube.memory.errors import InvalidName

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_id(kind: str, value: str) -> str:
    """``value`` if usable as an agent, conversation, task or key id, else :class:`InvalidName`."""
    if not _ID.fullmatch(value):
        raise InvalidName(
            f"{kind} {value!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class Retention:
    max_turns: int = 50
    """Turns kept per session; older ones are deleted when a new one is appended."""
    ttl_s: float = 30 * 24 * 3600.0
    """Seconds a session lives after its last turn."""

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.ttl_s <= 0:
            raise InvalidName("retention needs max_turns >= 1 and ttl_s > 0")


class TaskRecord(BaseModel):
    """What is known about one task, by id (the teams layer adds queues on top)."""

    model_config = ConfigDict(frozen=True)

    id: str
    agent: str
    state: str
    created: float
    updated: float
    input: str = ""
    output: str | None = None
    error: str | None = None


class StateStore(Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def location(self) -> str:
        """Where the store is (URL without credentials, or path), for messages."""
        ...

    async def load_turns(self, agent: str, conversation: str) -> list[bytes]:
        """The session's turns, oldest first; empty if none or expired."""
        ...

    async def append_turn(self, agent: str, conversation: str, turn: bytes) -> None:
        """Append one turn, then trim to ``max_turns`` and restart the session's TTL."""
        ...

    async def delete_session(self, agent: str, conversation: str) -> None: ...

    async def put_task(self, record: TaskRecord, ttl_s: float | None = None) -> None: ...

    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


__all__ = ["Retention", "StateStore", "TaskRecord", "check_id"]
