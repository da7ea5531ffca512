"""The `redis_server` fixture: one real redis-server on loopback per test session.

Shared by the memory and teams tests (the server class lives in tests/memory/servers.py); each
test keeps to its own namespace or key prefix, so tests sharing the server never meet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.memory.servers import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
