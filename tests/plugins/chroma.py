"""The `chroma_server` fixture: one real ``chroma run`` on loopback per test session.

Shared by the memory and operator tests (the server class lives in tests/memory/servers.py);
each test keeps to its own namespace (Chroma tenant), so tests sharing the server never meet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.memory.servers import ChromaServer


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path_factory.mktemp("chroma"))
    server.start()
    yield server
    server.stop()
