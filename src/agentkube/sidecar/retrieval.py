"""Where the context comes from: the :class:`Retriever` seam, and its memory-backed default.

:class:`KnowledgeRetriever` searches each collection the request may read (concurrently), keeps
the best ``k`` above ``min_score`` and bounds the whole lookup by a timeout: a slow store must
not hold the model's request for long. Every failure becomes :class:`RetrievalFailed` with one
line naming the store, which the proxy turns into fail-open or fail-closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from agentkube.memory.embeddings import Embedder
from agentkube.memory.knowledge import Knowledge, Passage
from agentkube.memory.settings import MemorySettings, open_embedder, open_vector_store
from agentkube.memory.vectors import VectorStore
from agentkube.sidecar.errors import RetrievalFailed

log = logging.getLogger(__name__)


class Retriever(Protocol):
    async def retrieve(self, collections: Sequence[str], query: str, k: int) -> list[Passage]:
        """The best ``k`` passages for ``query`` across ``collections``, best first."""
        ...

    async def check(self, collections: Sequence[str]) -> None:
        """Raise :class:`RetrievalFailed` unless every collection can be searched now."""
        ...


class KnowledgeRetriever:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        *,
        min_score: float | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.store = store
        self.knowledge = Knowledge(store, embedder)
        self.min_score = min_score
        self.timeout_s = timeout_s

    async def _search(self, collections: Sequence[str], query: str, k: int) -> list[Passage]:
        found = await asyncio.gather(*(self.knowledge.search(c, query, k) for c in collections))
        passages = sorted((p for ps in found for p in ps), key=lambda p: p.score, reverse=True)
        if self.min_score is not None:
            passages = [p for p in passages if p.score >= self.min_score]
        return passages[:k]

    async def retrieve(self, collections: Sequence[str], query: str, k: int) -> list[Passage]:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._search(collections, query, k)
        except TimeoutError as e:
            raise RetrievalFailed(
                f"retrieval from {self.store.location} took over {self.timeout_s:g}s"
            ) from e
        except Exception as e:  # any store or embedder failure: the caller decides open/closed
            raise RetrievalFailed(f"retrieval from {self.store.location} failed: {e}") from e

    async def check(self, collections: Sequence[str]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                for collection in collections:
                    await self.store.describe(collection)  # a round trip: counts
        except Exception as e:
            raise RetrievalFailed(f"vector store {self.store.location}: {e}") from e


async def warm_up(retriever: KnowledgeRetriever, collections: Sequence[str]) -> None:
    """Connect to the store and load each collection's index now, not in the first request's
    time budget; a store that is down only logs (requests fail open or closed later)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            await retriever._search(collections, "warm-up", 1)
    except Exception as e:
        log.warning("could not warm up %s: %s", ", ".join(collections), e)
        return
    log.info("warmed up %s in %.2fs", ", ".join(collections), time.perf_counter() - started)


@asynccontextmanager
async def open_knowledge_retriever(
    settings: MemorySettings,
    *,
    min_score: float | None = None,
    timeout_s: float = 5.0,
    warm: Sequence[str] = (),
) -> AsyncIterator[KnowledgeRetriever]:
    """The retriever over the stores ``settings`` select; the embedder loads here, and the
    ``warm`` collections are opened, up front, so the first request does not pay for them."""
    embedder = await open_embedder(settings)
    store = open_vector_store(settings)
    try:
        retriever = KnowledgeRetriever(store, embedder, min_score=min_score, timeout_s=timeout_s)
        if warm:
            await warm_up(retriever, warm)
        yield retriever
    finally:
        await store.aclose()
        await embedder.aclose()
