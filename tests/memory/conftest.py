"""Fixtures of the memory tests: real servers, the real local embedder, backends by name.

``redis_server`` comes from tests/plugins/redis.py. ``state_store`` and ``vector_store`` are
parametrized over the embedded and the server backend, so one suite of Protocol tests runs
against both. Each test gets its own namespace (a Chroma
tenant, a Redis key prefix), so tests sharing a server never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.state import Retention, StateStore
from agentkube.memory.state.redis import RedisState
from agentkube.memory.state.sqlite import SqliteState
from agentkube.memory.vectors import VectorStore
from agentkube.memory.vectors.chroma import ChromaServer as ChromaClient
from agentkube.memory.vectors.chroma import EmbeddedChroma
from tests.memory.servers import ChromaServer, RedisServer


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


RETENTION = Retention(max_turns=3, ttl_s=0.6)


@pytest.fixture(params=["sqlite", "redis"])
async def state_store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[StateStore]:
    store: StateStore
    if request.param == "sqlite":
        store = SqliteState(tmp_path / "state.sqlite3", namespace, RETENTION)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisState(server.url, namespace, RETENTION)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(params=["embedded", "server"])
async def vector_store(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[VectorStore]:
    store: VectorStore
    if request.param == "embedded":
        store = EmbeddedChroma(tmp_path / "vectors", namespace)
    else:
        server: ChromaServer = request.getfixturevalue("chroma_server")
        store = ChromaClient(server.url, namespace)
    try:
        yield store
    finally:
        await store.aclose()
