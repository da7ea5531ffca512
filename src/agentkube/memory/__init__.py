"""Agent memory: shared state, knowledge collections and embeddings — embedded or on servers.

Three seams, each a Protocol with an embedded and a server backend:

* **state** (:class:`StateStore`): conversation sessions keyed namespace/agent/conversation with
  bounded retention, task records, small key/value entries — SQLite
  (:class:`~agentkube.memory.state.sqlite.SqliteState`) or Redis
  (:class:`~agentkube.memory.state.redis.RedisState`).
* **vectors** (:class:`VectorStore`): collections recording their embedder — Chroma embedded
  (:class:`~agentkube.memory.vectors.chroma.EmbeddedChroma`) or a Chroma server
  (:class:`~agentkube.memory.vectors.chroma.ChromaServer`).
* **embeddings** (:class:`Embedder`): wordllama shipped in its wheel
  (:class:`~agentkube.memory.embeddings.local.WordLlamaEmbedder`) or an OpenAI-compatible
  endpoint (:class:`~agentkube.memory.embeddings.openai.OpenAIEmbedder`).

What the runtime calls (all async)::

    memory = AgentMemory(MemorySettings.from_env(), agent="planner")
    sessions = memory.sessions()                       # Sessions
    history = await sessions.load("planner", conversation)      # list[ModelMessage]
    await sessions.append("planner", conversation, new_messages)
    # or, as the runtime's HistoryStore: SessionHistory(sessions, conversation)
    ltm = await memory.long_term()                     # LongTermMemory
    fact_id = await ltm.remember("the user prefers metric units")
    facts = await ltm.recall("which units?", k=5)      # list[Recollection]
    kb = await memory.knowledge()                      # Knowledge
    passages = await kb.search("docs", "how do I install?", k=5)  # list[Passage]
    await memory.aclose()

Ingestion (:func:`~agentkube.memory.ingestion.ingest`) fills collections from files; tenancy
(:mod:`agentkube.memory.tenancy`) keeps namespaces apart (key prefixes, a Redis ACL user per
namespace, a Chroma tenant per namespace). Errors: :mod:`agentkube.memory.errors`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exported lazily: the CLI's memory commands must not pay for pydantic-ai (sessions) and the
# runtime must not pay for Chroma until it uses them.
_EXPORTS = {
    "AgentMemory": "agent_memory",
    "CollectionInfo": "vectors",
    "Embedder": "embeddings",
    "Hit": "vectors",
    "Knowledge": "knowledge",
    "LongTermMemory": "knowledge",
    "MemorySettings": "settings",
    "Passage": "knowledge",
    "Recollection": "knowledge",
    "Retention": "state",
    "SessionHistory": "history",
    "Sessions": "sessions",
    "StateStore": "state",
    "TaskRecord": "state",
    "VectorStore": "vectors",
    "new_conversation_id": "sessions",
}

if TYPE_CHECKING:
    from agentkube.memory.agent_memory import AgentMemory
    from agentkube.memory.embeddings import Embedder
    from agentkube.memory.history import SessionHistory
    from agentkube.memory.knowledge import Knowledge, LongTermMemory, Passage, Recollection
    from agentkube.memory.sessions import Sessions, new_conversation_id
    from agentkube.memory.settings import MemorySettings
    from agentkube.memory.state import Retention, StateStore, TaskRecord
    from agentkube.memory.vectors import CollectionInfo, Hit, VectorStore


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agentkube.memory' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agentkube.memory.{_EXPORTS[name]}"), name)


__all__ = [
    "AgentMemory",
    "CollectionInfo",
    "Embedder",
    "Hit",
    "Knowledge",
    "LongTermMemory",
    "MemorySettings",
    "Passage",
    "Recollection",
    "Retention",
    "SessionHistory",
    "Sessions",
    "StateStore",
    "TaskRecord",
    "VectorStore",
    "new_conversation_id",
]
