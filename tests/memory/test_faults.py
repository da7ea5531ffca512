"""A store killed mid-run: a one-line error naming its URL, then recovery once it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agentkube.memory.errors import StoreUnavailable
from agentkube.memory.state.redis import RedisState
from agentkube.memory.vectors.chroma import ChromaServer as ChromaClient
from tests.memory.servers import ChromaServer, RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_redis_killed_mid_conversation_fails_clearly_then_recovers_with_its_data(
    own_redis: RedisServer,
) -> None:
    store = RedisState(own_redis.url, "team-a", timeout_s=2)
    try:
        await store.append_turn("planner", "c1", b"before the crash")
        own_redis.kill()
        with pytest.raises(StoreUnavailable) as raised:
            await store.append_turn("planner", "c1", b"during the outage")
        message = str(raised.value)
        assert message.startswith(f"state store at {own_redis.url} is unavailable")
        assert "\n" not in message
        own_redis.start()
        await store.append_turn("planner", "c1", b"after the restart")
        assert await store.load_turns("planner", "c1") == [
            b"before the crash",
            b"after the restart",
        ]
    finally:
        await store.aclose()


async def test_a_redis_url_with_a_password_is_named_without_it(own_redis: RedisServer) -> None:
    own_redis.kill()
    url = f"redis://someone:s3cret@127.0.0.1:{own_redis.port}/0"
    store = RedisState(url, "team-a", timeout_s=2)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.get("x")
    finally:
        await store.aclose()
    assert f"redis://someone:***@127.0.0.1:{own_redis.port}/0" in str(raised.value)
    assert "s3cret" not in str(raised.value)


async def test_chroma_killed_mid_run_fails_clearly_then_recovers_with_its_data(
    own_chroma: ChromaServer,
) -> None:
    store = ChromaClient(own_chroma.url, "team-a")
    vector = np.asarray([[1.0, 0.0]], np.float32)
    try:
        await store.open_collection("kb-1", "test:2", 2)
        await store.upsert("kb-1", ["a"], vector, ["before"], [{"source": "a"}])
        own_chroma.kill()
        with pytest.raises(StoreUnavailable) as raised:
            await store.query("kb-1", vector, 1)
        message = str(raised.value)
        assert message.startswith(f"vector store at {own_chroma.url} is unavailable")
        assert "\n" not in message
        own_chroma.start()
        await store.upsert("kb-1", ["b"], vector, ["after"], [{"source": "b"}])
        assert sorted(await store.all_metadata("kb-1")) == ["a", "b"]
    finally:
        await store.aclose()


async def test_a_chroma_server_that_was_never_there_is_named(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    store = ChromaClient(url, "team-a")
    try:
        with pytest.raises(StoreUnavailable, match=r"^vector store at http://127\.0\.0\.1:9 is"):
            await store.list_collections()
    finally:
        await store.aclose()
