"""A ``KnowledgeBase`` on one machine: its sources read, then ingested into its collection.

``agentkube run`` / ``agent serve`` ingest every KnowledgeBase of the file before the agent
starts, into the store the agent reads (the embedded one under the data directory, or
``AGENTKUBE_VECTOR_URL``), so one file describes an agent and its knowledge on both sides.
The collection mirrors the KnowledgeBase: ingestion is idempotent (unchanged chunks are left
alone) and prunes what its sources no longer hold.

Inline documents come from the manifest (cited as ``<knowledgebase>/<name>``); http(s) URLs
are fetched (text only, bounded in size and time; cited by their URL). ConfigMaps exist only in
a cluster: here they are skipped with a warning; the operator's ingestion Job mounts each one as a
directory (``<dir>/<configmap>/<key>``, :func:`config_map_documents`; cited as
``configmap/<configmap>/<key>``). Every source is read before anything is written, so a URL that
fails leaves the collection as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from agentkube.api.models import KnowledgeBase
from agentkube.memory.chunking import MARKDOWN_SUFFIXES
from agentkube.memory.embeddings import Embedder
from agentkube.memory.errors import MemoryFailure
from agentkube.memory.ingestion import Document, IngestReport, ingest
from agentkube.memory.vectors import VectorStore

MAX_URL_BYTES = 8 * 1024 * 1024
URL_TIMEOUT_S = 30.0
TEXT_TYPES = ("text/", "application/json", "application/xml")


class SourceUnreadable(MemoryFailure):
    """A source of a KnowledgeBase could not be read (names the KnowledgeBase and the source)."""


@dataclass(frozen=True, kw_only=True)
class KnowledgeBaseReport:
    name: str
    collection: str
    report: IngestReport
    skipped: tuple[str, ...] = ()


def _is_markdown(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in MARKDOWN_SUFFIXES


def inline_documents(kb: KnowledgeBase) -> list[Document]:
    name = kb.metadata.name
    return [
        Document(source=f"{name}/{doc.name}", text=doc.text, markdown=_is_markdown(doc.name))
        for doc in kb.spec.sources.inline
    ]


async def fetch_url(client: httpx.AsyncClient, where: str, url: str) -> Document:
    """The text at ``url``; :class:`SourceUnreadable` naming ``where`` when it cannot be had."""
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise SourceUnreadable(
                    f"{where} {url}: HTTP {response.status_code}; fix the URL or the server"
                )
            kind = response.headers.get("content-type", "text/plain").split(";")[0].strip()
            if not kind.startswith(TEXT_TYPES):
                raise SourceUnreadable(f"{where} {url}: {kind} is not text; link a text page")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_URL_BYTES:
                    raise SourceUnreadable(
                        f"{where} {url}: more than {MAX_URL_BYTES} bytes; link a smaller document"
                    )
    except httpx.HTTPError as e:
        raise SourceUnreadable(f"{where} {url}: cannot fetch it ({e!r})") from e
    text = body.decode(response.encoding or "utf-8", errors="replace")
    markdown = kind == "text/markdown" or _is_markdown(urlsplit(url).path)
    return Document(source=url, text=text, markdown=markdown)


def config_map_documents(kb: KnowledgeBase, mounted: Path) -> list[Document]:
    """The documents of ``kb``'s ConfigMaps as mounted under ``mounted`` (one directory each,
    a file per key; the kubelet's ``..data`` links are not keys)."""
    documents = []
    for source in kb.spec.sources.config_maps:
        directory = mounted / source.name
        keys = source.keys if source.keys is not None else _mounted_keys(directory)
        for key in keys:
            path = directory / key
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SourceUnreadable(
                    f"KnowledgeBase {kb.metadata.name}: configMap {source.name} key {key}: "
                    f"cannot read {path} ({e}); put UTF-8 text under that key"
                ) from e
            where = f"configmap/{source.name}/{key}"
            documents.append(Document(source=where, text=text, markdown=_is_markdown(key)))
    return documents


def _mounted_keys(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".."))


async def read_sources(
    kb: KnowledgeBase,
    client: httpx.AsyncClient,
    warn: Callable[[str], None],
    config_maps: Path | None = None,
) -> tuple[list[Document], tuple[str, ...]]:
    """Every document of ``kb`` that can be read here, and the sources skipped (ConfigMaps,
    unless ``config_maps`` is where they are mounted)."""
    where = f"KnowledgeBase {kb.metadata.name}: spec.sources.urls"
    documents = inline_documents(kb)
    if config_maps is not None:
        documents += config_map_documents(kb, config_maps)
    for i, url in enumerate(kb.spec.sources.urls):
        documents.append(await fetch_url(client, f"{where}[{i}]", url))
    if config_maps is not None:
        return documents, ()
    skipped = tuple(f"configMap {c.name}" for c in kb.spec.sources.config_maps)
    for source in skipped:
        warn(
            f"KnowledgeBase {kb.metadata.name}: {source} skipped on this machine "
            "(ConfigMaps are read in a cluster); inline the documents or link them by URL"
        )
    return documents, skipped


async def ingest_knowledge_bases(
    bases: Sequence[KnowledgeBase],
    store: VectorStore,
    embedder: Embedder,
    *,
    warn: Callable[[str], None],
    transport: httpx.AsyncBaseTransport | None = None,
    config_maps: Path | None = None,
) -> list[KnowledgeBaseReport]:
    """Bring each KnowledgeBase's collection up to date with its sources (its ConfigMaps read
    from ``config_maps`` when given: in the operator's ingestion Job)."""
    timeout = httpx.Timeout(URL_TIMEOUT_S)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        read = [(kb, *(await read_sources(kb, client, warn, config_maps))) for kb in bases]
    reports = []
    for kb, documents, skipped in read:
        collection = kb.spec.collection
        report = await ingest(store, embedder, collection, documents, prune=True)
        reports.append(
            KnowledgeBaseReport(
                name=kb.metadata.name, collection=collection, report=report, skipped=skipped
            )
        )
    return reports
