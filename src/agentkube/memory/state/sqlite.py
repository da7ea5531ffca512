"""State in a SQLite file (embedded mode), one namespace per store.

One connection per store, used from worker threads under a lock (SQLite serialises writers
anyway); WAL mode so an agent server and a CLI run can share the file. Appending a turn is one
transaction that inserts it, trims the session to ``max_turns`` and sweeps every expired
session, task and entry — retention is enforced on write, like Redis's ``LTRIM``/``PEXPIRE``.
Reads also hide what has expired since the last write. The clock is injectable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agentkube.memory.errors import MemoryFailure, StoreUnavailable
from agentkube.memory.state import Retention, TaskRecord, check_id
from agentkube.memory.tenancy import DEFAULT_NAMESPACE, check_namespace

T = TypeVar("T")
NEVER = float("inf")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    namespace TEXT NOT NULL, agent TEXT NOT NULL, conversation TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (namespace, agent, conversation)
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL, agent TEXT NOT NULL, conversation TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns (namespace, agent, conversation, seq);
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (namespace, kind, key)
);
"""


class SqliteState:
    kind = "state store"

    def __init__(
        self,
        path: Path,
        namespace: str = DEFAULT_NAMESPACE,
        retention: Retention | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._namespace = check_namespace(namespace)
        self._retention = retention or Retention()
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(
                self.kind, str(path), f"{e}; check --data-dir or AGENTKUBE_DATA_DIR is writable"
            ) from e

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def location(self) -> str:
        return str(self.path)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                try:
                    with self._db:
                        return fn(self._db)
                except sqlite3.Error as e:
                    raise MemoryFailure(f"{self.kind} at {self.path}: {e}") from e

        return await asyncio.to_thread(locked)

    def _session_args(self, agent: str, conversation: str) -> tuple[str, str, str]:
        return (self._namespace, check_id("agent", agent), check_id("conversation", conversation))

    async def load_turns(self, agent: str, conversation: str) -> list[bytes]:
        args = self._session_args(agent, conversation)
        now = self._clock()

        def load(db: sqlite3.Connection) -> list[bytes]:
            alive = db.execute(
                "SELECT 1 FROM sessions WHERE namespace=? AND agent=? AND conversation=? "
                "AND expires > ?",
                (*args, now),
            ).fetchone()
            if alive is None:
                return []
            rows = db.execute(
                "SELECT body FROM turns WHERE namespace=? AND agent=? AND conversation=? "
                "ORDER BY seq",
                args,
            ).fetchall()
            return [bytes(body) for (body,) in rows]

        return await self._run(load)

    async def append_turn(self, agent: str, conversation: str, turn: bytes) -> None:
        args = self._session_args(agent, conversation)
        now = self._clock()
        keep = self._retention.max_turns

        def append(db: sqlite3.Connection) -> None:
            self._sweep(db, now)
            db.execute(
                "INSERT INTO turns (namespace, agent, conversation, body) VALUES (?, ?, ?, ?)",
                (*args, turn),
            )
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "expires = excluded.expires",
                (*args, now + self._retention.ttl_s),
            )
            db.execute(
                "DELETE FROM turns WHERE namespace=? AND agent=? AND conversation=? AND seq <= "
                "(SELECT seq FROM turns WHERE namespace=? AND agent=? AND conversation=? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (*args, *args, keep),
            )

        await self._run(append)

    @staticmethod
    def _sweep(db: sqlite3.Connection, now: float) -> None:
        """Delete every expired session (with its turns) and entry, across namespaces."""
        db.execute(
            "DELETE FROM turns WHERE (namespace, agent, conversation) IN "
            "(SELECT namespace, agent, conversation FROM sessions WHERE expires <= ?)",
            (now,),
        )
        db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        db.execute("DELETE FROM entries WHERE expires <= ?", (now,))

    async def delete_session(self, agent: str, conversation: str) -> None:
        args = self._session_args(agent, conversation)

        def delete(db: sqlite3.Connection) -> None:
            where = "namespace=? AND agent=? AND conversation=?"
            db.execute(f"DELETE FROM turns WHERE {where}", args)  # noqa: S608 (constant)
            db.execute(f"DELETE FROM sessions WHERE {where}", args)  # noqa: S608 (constant)

        await self._run(delete)

    async def _put(self, kind: str, key: str, value: bytes, ttl_s: float | None) -> None:
        now = self._clock()
        expires = now + ttl_s if ttl_s else NEVER
        row = (self._namespace, kind, key, value, expires)

        def put(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", row)

        await self._run(put)

    async def _get(self, kind: str, key: str) -> bytes | None:
        args: tuple[Any, ...] = (self._namespace, kind, key, self._clock())

        def get(db: sqlite3.Connection) -> bytes | None:
            found = db.execute(
                "SELECT value FROM entries WHERE namespace=? AND kind=? AND key=? AND expires > ?",
                args,
            ).fetchone()
            return None if found is None else bytes(found[0])

        return await self._run(get)

    async def put_task(self, record: TaskRecord, ttl_s: float | None = None) -> None:
        key = check_id("task id", record.id)
        await self._put("task", key, record.model_dump_json().encode(), ttl_s)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        body = await self._get("task", check_id("task id", task_id))
        return None if body is None else TaskRecord.model_validate_json(body)

    async def get(self, key: str) -> bytes | None:
        return await self._get("kv", check_id("key", key))

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self._put("kv", check_id("key", key), value, ttl_s)

    async def delete(self, key: str) -> None:
        args = (self._namespace, check_id("key", key))

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM entries WHERE namespace=? AND kind='kv' AND key=?", args)

        await self._run(delete)

    async def aclose(self) -> None:
        with self._lock:
            self._db.close()
