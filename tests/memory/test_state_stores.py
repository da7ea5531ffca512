"""One suite for both state backends (SQLite embedded, Redis), through the StateStore Protocol."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from agentkube.memory.errors import InvalidName
from agentkube.memory.state import StateStore, TaskRecord
from agentkube.memory.state.redis import RedisState
from agentkube.memory.state.sqlite import SqliteState
from agentkube.memory.tenancy import key_prefix
from tests.memory.conftest import RETENTION


async def stored_turns(store: StateStore, agent: str, conversation: str) -> int:
    """Turns physically stored, whatever reads would show: proves pruning happened on write."""
    if isinstance(store, RedisState):
        key = f"{key_prefix(store.namespace)}session:{agent}:{conversation}"
        length: Any = store.client.llen(key)  # typed sync-or-async by redis-py
        return int(await length)
    assert isinstance(store, SqliteState)
    with sqlite3.connect(store.path) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM turns WHERE agent=? AND conversation=?", (agent, conversation)
        ).fetchone()
    return int(count)


async def test_a_session_returns_its_turns_in_order(state_store: StateStore) -> None:
    await state_store.append_turn("planner", "c1", b"one")
    await state_store.append_turn("planner", "c1", b"two")
    assert await state_store.load_turns("planner", "c1") == [b"one", b"two"]


async def test_conversations_and_agents_do_not_share_turns(state_store: StateStore) -> None:
    await state_store.append_turn("planner", "c1", b"planner c1")
    await state_store.append_turn("planner", "c2", b"planner c2")
    await state_store.append_turn("executor", "c1", b"executor c1")
    assert await state_store.load_turns("planner", "c1") == [b"planner c1"]
    assert await state_store.load_turns("planner", "c2") == [b"planner c2"]
    assert await state_store.load_turns("executor", "c1") == [b"executor c1"]
    assert await state_store.load_turns("executor", "c2") == []


async def test_appending_beyond_max_turns_deletes_the_oldest_from_storage(
    state_store: StateStore,
) -> None:
    for n in range(RETENTION.max_turns + 4):
        await state_store.append_turn("planner", "long", f"turn {n}".encode())
    kept = await state_store.load_turns("planner", "long")
    assert kept == [f"turn {n}".encode() for n in range(4, RETENTION.max_turns + 4)]
    assert await stored_turns(state_store, "planner", "long") == RETENTION.max_turns


async def test_an_idle_session_expires_after_its_ttl(state_store: StateStore) -> None:
    await state_store.append_turn("planner", "idle", b"old")
    await asyncio.sleep(RETENTION.ttl_s + 0.3)
    assert await state_store.load_turns("planner", "idle") == []
    await state_store.append_turn("planner", "other", b"a write sweeps expired sessions")
    assert await stored_turns(state_store, "planner", "idle") == 0


async def test_a_new_turn_restarts_the_ttl(state_store: StateStore) -> None:
    await state_store.append_turn("planner", "busy", b"first")
    await asyncio.sleep(RETENTION.ttl_s * 0.6)
    await state_store.append_turn("planner", "busy", b"second")
    await asyncio.sleep(RETENTION.ttl_s * 0.6)
    assert await state_store.load_turns("planner", "busy") == [b"first", b"second"]


async def test_a_deleted_session_is_empty(state_store: StateStore) -> None:
    await state_store.append_turn("planner", "gone", b"x")
    await state_store.delete_session("planner", "gone")
    assert await state_store.load_turns("planner", "gone") == []


async def test_task_records_round_trip(state_store: StateStore) -> None:
    record = TaskRecord(id="t-1", agent="planner", state="running", created=1.0, updated=2.0)
    await state_store.put_task(record)
    assert await state_store.get_task("t-1") == record
    done = record.model_copy(update={"state": "succeeded", "output": "42"})
    await state_store.put_task(done)
    assert await state_store.get_task("t-1") == done
    assert await state_store.get_task("t-2") is None


async def test_key_values_round_trip_and_expire(state_store: StateStore) -> None:
    await state_store.set("plan", b"step 1")
    await state_store.set("lease", b"mine", ttl_s=0.3)
    assert await state_store.get("plan") == b"step 1"
    assert await state_store.get("lease") == b"mine"
    await asyncio.sleep(0.5)
    assert await state_store.get("lease") is None
    await state_store.delete("plan")
    assert await state_store.get("plan") is None


@pytest.mark.parametrize("bad", ["", "a:b", "a*", "../x", "x" * 129])
async def test_ids_that_could_escape_their_key_are_refused(
    state_store: StateStore, bad: str
) -> None:
    with pytest.raises(InvalidName):
        await state_store.append_turn("planner", bad, b"x")
    with pytest.raises(InvalidName):
        await state_store.get(bad)
