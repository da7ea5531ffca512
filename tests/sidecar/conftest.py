"""Fixtures of the RAG proxy tests: a knowledge collection, the stand-in model, the proxy.

The proxy runs on a real uvicorn server on loopback in front of the OpenAI-compatible stand-in
(tests/standins/openai_server.py), reading a collection ingested with the real local embedder —
embedded Chroma, or a real ``chroma run`` server (tests/memory/servers.py) that a test may kill.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.ingestion import Document, ingest
from agentkube.memory.settings import MemorySettings, open_vector_store
from agentkube.sidecar.forwarding import ProxyConfig
from agentkube.sidecar.metrics import ProxyMetrics
from agentkube.sidecar.proxy import create_app
from agentkube.sidecar.retrieval import KnowledgeRetriever, Retriever
from tests.memory.servers import ChromaServer
from tests.standins.openai_server import ScriptedModel
from tests.standins.openai_server import create_app as create_model_app
from tests.standins.serving import serve

COLLECTION = "handbook"
OTHER = "release-notes"

DOCUMENTS = {
    COLLECTION: {
        "/docs/operator.md": "# The operator\n\nThe agentkube operator is nicknamed Orca. It "
        "reconciles every Agent within two seconds and listens on port 7443 for webhooks.",
        "/docs/sandbox.md": "# Sandboxes\n\nEvery tool execution runs in a gVisor sandbox with "
        "half a CPU, 128 MiB of memory and no network.",
        "/docs/cooking.md": "# Pancakes\n\nMix flour, eggs and milk; fry in butter until golden.",
    },
    OTHER: {
        "/notes/v2.md": "# Release 2\n\nRelease 2 renamed the sidecar to rag-proxy and added "
        "streaming.",
    },
}


@pytest.fixture(scope="session")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


async def fill(settings: MemorySettings, embedder: WordLlamaEmbedder) -> None:
    store = open_vector_store(settings)
    try:
        for collection, docs in DOCUMENTS.items():
            documents = [Document(source=s, text=t, markdown=True) for s, t in docs.items()]
            await ingest(store, embedder, collection, documents)
    finally:
        await store.aclose()


@pytest.fixture
async def embedded_knowledge(tmp_path: Path, embedder: WordLlamaEmbedder) -> MemorySettings:
    settings = MemorySettings(data_dir=tmp_path / "data", namespace="default")
    await fill(settings, embedder)
    return settings


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A Chroma server of this test's own: tests kill it."""
    server = ChromaServer(tmp_path / "chroma")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def server_knowledge(
    chroma: ChromaServer, tmp_path: Path, embedder: WordLlamaEmbedder
) -> MemorySettings:
    settings = MemorySettings(
        data_dir=tmp_path / "unused",
        namespace=f"t-{uuid.uuid4().hex[:10]}",
        vector_url=chroma.url,
    )
    await fill(settings, embedder)
    return settings


@pytest.fixture
def model() -> Iterator[tuple[ScriptedModel, str]]:
    """The stand-in model and its base URL (``.../v1``)."""
    script = ScriptedModel()
    with serve(create_model_app(script)) as url:
        yield script, f"{url}/v1"


@dataclass
class RunningProxy:
    url: str
    """The proxy's root; clients use ``{url}/v1``."""
    script: ScriptedModel
    upstream: str
    metrics: ProxyMetrics = field(default_factory=ProxyMetrics)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@contextmanager
def running_proxy(
    settings: MemorySettings,
    embedder: WordLlamaEmbedder,
    model: tuple[ScriptedModel, str],
    *,
    min_score: float | None = None,
    retrieval_timeout_s: float = 5.0,
    **config: object,
) -> Iterator[RunningProxy]:
    """The proxy on loopback in front of ``model``, reading ``settings``' store (the shared
    session embedder, so no test pays for loading it again)."""
    script, upstream = model

    @asynccontextmanager
    async def retriever() -> AsyncIterator[Retriever]:
        store = open_vector_store(settings)
        try:
            yield KnowledgeRetriever(
                store, embedder, min_score=min_score, timeout_s=retrieval_timeout_s
            )
        finally:
            await store.aclose()

    proxy_config = ProxyConfig(
        upstream=upstream,
        collections=config.pop("collections", (COLLECTION, OTHER)),  # type: ignore[arg-type]
        **config,  # type: ignore[arg-type]
    )
    metrics = ProxyMetrics()
    with serve(create_app(proxy_config, retriever, metrics=metrics)) as url:
        yield RunningProxy(url=url, script=script, upstream=upstream, metrics=metrics)


@pytest.fixture
def proxy(
    embedded_knowledge: MemorySettings,
    embedder: WordLlamaEmbedder,
    model: tuple[ScriptedModel, str],
) -> Iterator[RunningProxy]:
    with running_proxy(embedded_knowledge, embedder, model) as running:
        yield running
