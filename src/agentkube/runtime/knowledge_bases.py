"""The KnowledgeBases of a run's file, ingested before its agents start (docs/rag.md).

The store and embedder are the ones the agent reads through: the memory settings of this
process (``--data-dir``, ``AGENTKUBE_VECTOR_URL``, ``AGENTKUBE_EMBEDDINGS_URL``), in its memory
tenant, so what ``spec.rag`` retrieves is what the KnowledgeBase declared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentkube.api.models import KnowledgeBase
from agentkube.memory.knowledge_bases import KnowledgeBaseReport, ingest_knowledge_bases
from agentkube.runtime.building import RuntimeSettings


async def ingest_local_knowledge(
    bases: Sequence[KnowledgeBase], settings: RuntimeSettings, warn: Callable[[str], None]
) -> list[KnowledgeBaseReport]:
    """Ingest ``bases`` into this process's store; nothing is opened when there are none."""
    if not bases:
        return []
    from agentkube.memory.settings import MemorySettings, open_embedder, open_vector_store

    memory = MemorySettings.from_env(dict(settings.environ), data_dir=settings.resolved_data_dir())
    store = open_vector_store(memory)
    try:
        embedder = await open_embedder(memory)
        try:
            return await ingest_knowledge_bases(bases, store, embedder, warn=warn)
        finally:
            await embedder.aclose()
    finally:
        await store.aclose()


def summary(report: KnowledgeBaseReport) -> str:
    r = report.report
    return (
        f"KnowledgeBase {report.name} -> collection {report.collection}: {r.documents} documents, "
        f"{r.chunks} chunks ({r.added} added, {r.unchanged} unchanged, {r.removed} removed)"
    )
