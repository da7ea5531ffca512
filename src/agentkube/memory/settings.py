"""Where memory lives: the environment names and the stores they select.

One place for the facts the CLI, the runtime and the operator's pod contract share. With no URL
set everything is embedded under the data directory (``vectors/`` for Chroma,
``state.sqlite3`` for state); ``AGENTKUBE_VECTOR_URL`` / ``AGENTKUBE_REDIS_URL`` select servers,
``AGENTKUBE_EMBEDDINGS_URL`` (+ ``_MODEL``, ``_API_KEY``) an OpenAI-compatible embedder instead
of the local one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentkube.api.pod_contract import (
    ENV_DATA_DIR,
    ENV_EMBEDDINGS_API_KEY,
    ENV_EMBEDDINGS_MODEL,
    ENV_EMBEDDINGS_URL,
    ENV_NAMESPACE,
    ENV_REDIS_URL,
    ENV_VECTOR_URL,
)
from agentkube.memory.embeddings import Embedder
from agentkube.memory.errors import InvalidName
from agentkube.memory.state import Retention, StateStore
from agentkube.memory.tenancy import DEFAULT_NAMESPACE, check_namespace
from agentkube.memory.vectors import VectorStore

VECTORS_DIR = "vectors"
STATE_FILE = "state.sqlite3"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    if environ.get(ENV_DATA_DIR):
        return Path(environ[ENV_DATA_DIR])
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentkube"


@dataclass(frozen=True, kw_only=True)
class MemorySettings:
    data_dir: Path
    namespace: str = DEFAULT_NAMESPACE
    vector_url: str | None = None
    redis_url: str | None = None
    embeddings_url: str | None = None
    embeddings_model: str | None = None
    embeddings_api_key: str | None = field(default=None, repr=False)
    retention: Retention = field(default_factory=Retention)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        vector_url: str | None = None,
        redis_url: str | None = None,
    ) -> MemorySettings:
        """Flags win over the environment, the environment over the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            data_dir=data_dir or default_data_dir(env),
            namespace=check_namespace(env.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE),
            vector_url=vector_url or env.get(ENV_VECTOR_URL) or None,
            redis_url=redis_url or env.get(ENV_REDIS_URL) or None,
            embeddings_url=env.get(ENV_EMBEDDINGS_URL) or None,
            embeddings_model=env.get(ENV_EMBEDDINGS_MODEL) or None,
            embeddings_api_key=env.get(ENV_EMBEDDINGS_API_KEY) or None,
        )


def open_vector_store(settings: MemorySettings) -> VectorStore:
    from agentkube.memory.vectors.chroma import ChromaServer, EmbeddedChroma

    if settings.vector_url:
        return ChromaServer(settings.vector_url, settings.namespace)
    return EmbeddedChroma(settings.data_dir / VECTORS_DIR, settings.namespace)


def open_state_store(settings: MemorySettings) -> StateStore:
    if settings.redis_url:
        from agentkube.memory.state.redis import RedisState

        return RedisState(settings.redis_url, settings.namespace, settings.retention)
    from agentkube.memory.state.sqlite import SqliteState

    return SqliteState(settings.data_dir / STATE_FILE, settings.namespace, settings.retention)


async def open_embedder(settings: MemorySettings) -> Embedder:
    """The OpenAI-compatible endpoint if one is configured, else the local wordllama model."""
    if settings.embeddings_url:
        if not settings.embeddings_model:
            raise InvalidName(f"{ENV_EMBEDDINGS_URL} is set: set {ENV_EMBEDDINGS_MODEL} too")
        from agentkube.memory.embeddings.openai import OpenAIEmbedder

        return await OpenAIEmbedder.probe(
            settings.embeddings_url, settings.embeddings_model, api_key=settings.embeddings_api_key
        )
    from agentkube.memory.embeddings.local import WordLlamaEmbedder

    return WordLlamaEmbedder()
