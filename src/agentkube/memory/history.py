"""Conversation history of an agent, kept across runs when ``memory: persistent``.

Each run appends the messages it added as one row, in one transaction, so a crash mid-run loses
at most that run and never corrupts earlier ones. Reads return the last ``max_runs`` runs in
order. The embedded store is SQLite under the data directory (WAL mode, so the agent HTTP server
and a CLI run can share it); in a cluster the same file lives on the agent's PVC.

:class:`SessionHistory` is the same :class:`HistoryStore` over the shared state seam
(:mod:`agentkube.memory.state`, SQLite or Redis) for one conversation id, with bounded retention;
it is what the runtime moves to for ``--conversation``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from agentkube.errors import RuntimeFailure
from agentkube.memory.sessions import Sessions

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    created REAL NOT NULL,
    messages BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent, id);
"""


class HistoryStore(Protocol):
    async def load(self, agent: str) -> list[ModelMessage]: ...

    async def append(self, agent: str, messages: list[ModelMessage]) -> None: ...


class InMemoryHistory:
    """History that lives as long as the process (``memory: ephemeral``)."""

    def __init__(self, max_runs: int = 20) -> None:
        self._runs: dict[str, list[list[ModelMessage]]] = defaultdict(list)
        self._max_runs = max_runs

    async def load(self, agent: str) -> list[ModelMessage]:
        return [m for run in self._runs[agent][-self._max_runs :] for m in run]

    async def append(self, agent: str, messages: list[ModelMessage]) -> None:
        self._runs[agent].append(list(messages))
        del self._runs[agent][: -self._max_runs]


class SqliteHistory:
    """History in a SQLite file (``memory: persistent``)."""

    def __init__(self, path: Path, max_runs: int = 20) -> None:
        self.path = path
        self._max_runs = max_runs
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise RuntimeFailure(
                f"cannot open the memory store {path} ({e}); check the data directory "
                "(--data-dir or AGENTKUBE_DATA_DIR) is writable"
            ) from e

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation, committed (or rolled back) and closed."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    async def load(self, agent: str) -> list[ModelMessage]:
        return await asyncio.to_thread(self._load, agent)

    async def append(self, agent: str, messages: list[ModelMessage]) -> None:
        await asyncio.to_thread(self._append, agent, messages)

    def _load(self, agent: str) -> list[ModelMessage]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT messages FROM runs WHERE agent = ? ORDER BY id DESC LIMIT ?",
                (agent, self._max_runs),
            ).fetchall()
        messages: list[ModelMessage] = []
        for (blob,) in reversed(rows):
            messages.extend(ModelMessagesTypeAdapter.validate_json(blob))
        return messages

    def _append(self, agent: str, messages: list[ModelMessage]) -> None:
        blob = ModelMessagesTypeAdapter.dump_json(messages)
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (agent, created, messages) VALUES (?, ?, ?)",
                (agent, time.time(), blob),
            )

    def run_count(self, agent: str) -> int:
        with self._connect() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM runs WHERE agent = ?", (agent,)).fetchone()
        return int(count)


class SessionHistory:
    """One conversation of the shared state store, as a :class:`HistoryStore`.

    The runtime keys history by ``namespace/name``; the namespace is already the store's, so only
    the name is used.
    """

    def __init__(self, sessions: Sessions, conversation: str) -> None:
        self.sessions = sessions
        self.conversation = conversation

    async def load(self, agent: str) -> list[ModelMessage]:
        return await self.sessions.load(_name(agent), self.conversation)

    async def append(self, agent: str, messages: list[ModelMessage]) -> None:
        await self.sessions.append(_name(agent), self.conversation, messages)


def _name(agent_key: str) -> str:
    return agent_key.rsplit("/", 1)[-1]
