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


ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture(scope="module")
def redis_with_admin_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the module's own whose admin (``default``) user has a password
    (:data:`ADMIN_PASSWORD`), as deploy/memory's has; a test may kill and restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis-admin"), "--requirepass", ADMIN_PASSWORD)
    server.start()
    yield server
    server.stop()
