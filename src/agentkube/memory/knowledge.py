"""Searching knowledge collections deliberately (RAG as a tool), and an agent's own memory.

:class:`Knowledge` answers "what do the documents say about X" from a collection filled by
``agentkube memory ingest``. :class:`LongTermMemory` is an agent's own collection
(``agent-<name>-memory`` in its namespace): facts it chose to remember, recalled by meaning.
Both embed with the embedder that filled the collection and refuse any other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentkube.memory.embeddings import Embedder
from agentkube.memory.errors import CollectionNotFound, InvalidName
from agentkube.memory.ingestion import search
from agentkube.memory.vectors import Metadata, VectorStore, check_collection_name


@dataclass(frozen=True, kw_only=True)
class Passage:
    text: str
    source: str
    score: float


@dataclass(frozen=True, kw_only=True)
class Recollection:
    id: str
    text: str
    score: float
    remembered_at: float


class Knowledge:
    def __init__(self, store: VectorStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    async def search(self, collection: str, query: str, k: int = 5) -> list[Passage]:
        hits = await search(self.store, self.embedder, collection, query, k)
        return [
            Passage(text=h.text, source=str(h.metadata.get("source", "")), score=h.score)
            for h in hits
        ]


def memory_collection(agent: str) -> str:
    return check_collection_name(f"agent-{agent}-memory")


class LongTermMemory:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        agent: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.collection = memory_collection(agent)
        self._clock = clock
        self._opened = False

    async def _open(self) -> None:
        if not self._opened:
            await self.store.open_collection(
                self.collection, self.embedder.name, self.embedder.dimension
            )
            self._opened = True

    async def remember(self, text: str) -> str:
        """Store one fact; the same text twice is one memory (refreshed). Returns its id."""
        fact = text.strip()
        if not fact:
            raise InvalidName("there is nothing to remember: the text is empty")
        await self._open()
        fact_id = hashlib.sha256(fact.encode()).hexdigest()[:32]
        vectors = await self.embedder.embed([fact])
        meta: Metadata = {"source": "agent", "remembered_at": self._clock()}
        await self.store.upsert(self.collection, [fact_id], vectors, [fact], [meta])
        return fact_id

    async def recall(self, query: str, k: int = 5) -> list[Recollection]:
        """The ``k`` remembered facts nearest to ``query``; empty before the first memory."""
        try:
            hits = await search(self.store, self.embedder, self.collection, query, k)
        except CollectionNotFound:
            return []
        return [
            Recollection(
                id=h.id,
                text=h.text,
                score=h.score,
                remembered_at=float(h.metadata.get("remembered_at", 0.0)),
            )
            for h in hits
        ]

    async def forget(self, fact_id: str) -> None:
        await self._open()
        await self.store.delete(self.collection, [fact_id])
