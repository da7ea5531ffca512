"""Everything an agent's runtime needs from memory, each store opened on first use.

Opening lazily is what lets an agent keep serving tasks that need no memory while a store is
down: only the calls that touch that store fail (with :class:`StoreUnavailable` naming its URL).
"""

from __future__ import annotations

import asyncio

from agentkube.memory.embeddings import Embedder
from agentkube.memory.knowledge import Knowledge, LongTermMemory
from agentkube.memory.sessions import Sessions
from agentkube.memory.settings import (
    MemorySettings,
    open_embedder,
    open_state_store,
    open_vector_store,
)
from agentkube.memory.state import StateStore
from agentkube.memory.vectors import VectorStore


class AgentMemory:
    def __init__(self, settings: MemorySettings, agent: str) -> None:
        self.settings = settings
        self.agent = agent
        self._state: StateStore | None = None
        self._vectors: VectorStore | None = None
        self._embedder: Embedder | None = None
        self._lock = asyncio.Lock()

    def sessions(self) -> Sessions:
        """The conversation sessions (SQLite or Redis, per the settings)."""
        if self._state is None:
            self._state = open_state_store(self.settings)
        return Sessions(self._state)

    async def _vector_parts(self) -> tuple[VectorStore, Embedder]:
        async with self._lock:
            if self._embedder is None:
                self._embedder = await open_embedder(self.settings)
            if self._vectors is None:
                self._vectors = open_vector_store(self.settings)
        return self._vectors, self._embedder

    async def long_term(self) -> LongTermMemory:
        """The agent's own semantic memory (``remember`` / ``recall``)."""
        store, embedder = await self._vector_parts()
        return LongTermMemory(store, embedder, self.agent)

    async def knowledge(self) -> Knowledge:
        """Deliberate search of knowledge collections (``search(collection, query, k)``)."""
        store, embedder = await self._vector_parts()
        return Knowledge(store, embedder)

    async def aclose(self) -> None:
        for part in (self._state, self._vectors, self._embedder):
            if part is not None:
                await part.aclose()
        self._state = self._vectors = self._embedder = None
