"""Knowledge ingestion: files → chunks → embeddings → a collection, idempotently.

Every chunk's id is derived from its document's path and its own text, so an unchanged chunk
keeps its id and is neither re-embedded nor rewritten (at most its position is updated). Each
chunk records ``source`` (the absolute path), ``chunk`` (its index) and ``doc`` (the document's
hash and chunk count); a document whose chunks all carry the current ``doc`` and are all present
is skipped without being chunked.

New chunks are embedded in batches, the next batch while the current one is written.
Writes are ordered so that an interruption at any point loses nothing: new chunks are added
first, then surviving chunks get the document's new hash, and only then are stale chunks
deleted. A re-run sees a document whose chunks are not all current as changed and finishes the
job. ``prune`` deletes the chunks of every document not in this run, so the collection mirrors
exactly what was ingested.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentkube.memory.chunking import (
    MARKDOWN_SUFFIXES,
    MAX_CHARS,
    OVERLAP_CHARS,
    Chunk,
    chunk_document,
)
from agentkube.memory.embeddings import Embedder
from agentkube.memory.errors import CollectionRefused, InvalidName
from agentkube.memory.vectors import Hit, Metadata, VectorStore

TEXT_SUFFIXES = frozenset({".txt", ".text", ".rst", *MARKDOWN_SUFFIXES})
CHUNKER_VERSION = 1
BATCH = 1024
"""New chunks embedded and written per step. Chroma writes each call in one SQLite transaction, so
larger batches pay its fixed cost less often (256 → 1,024 was ~1.3x end to end on 2 cores); much
larger ones leave nothing to overlap (one 5,000-chunk batch was slower than five of 1,024)."""

Progress = Callable[[int, int], None]
"""Called with (chunks embedded so far, chunks to embed)."""


@dataclass(frozen=True, kw_only=True)
class Document:
    source: str
    text: str
    markdown: bool


@dataclass(frozen=True, kw_only=True)
class IngestReport:
    documents: int
    chunks: int
    added: int
    unchanged: int
    removed: int

    def summary(self) -> dict[str, int]:
        """The CLI's ``--json`` object: exactly these five counts."""
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "added": self.added,
            "unchanged": self.unchanged,
            "removed": self.removed,
        }


@dataclass(kw_only=True)
class _Plan:
    chunks: int = 0
    unchanged: int = 0
    add_ids: list[str] = field(default_factory=list)
    add_texts: list[str] = field(default_factory=list)
    add_metas: list[Metadata] = field(default_factory=list)
    update_ids: list[str] = field(default_factory=list)
    update_metas: list[Metadata] = field(default_factory=list)
    delete_ids: list[str] = field(default_factory=list)


def discover(paths: Sequence[Path]) -> Iterator[Path]:
    """The files named, and the text/Markdown files under the directories named, sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            )
        elif path.is_file():
            yield path
        else:
            raise InvalidName(f"{path} does not exist (pass text or Markdown files or directories)")


def read_documents(paths: Sequence[Path], warn: Callable[[str], None]) -> list[Document]:
    """The documents under ``paths``; a file that is not UTF-8 text is skipped with a warning."""
    documents: dict[str, Document] = {}
    for path in discover(paths):
        source = str(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            warn(f"skipped {path}: not UTF-8 text")
            continue
        except OSError as e:
            warn(f"skipped {path}: {e.strerror or e}")
            continue
        markdown = path.suffix.lower() in MARKDOWN_SUFFIXES
        documents[source] = Document(source=source, text=text, markdown=markdown)
    return list(documents.values())


def document_hash(document: Document) -> str:
    """Changes with the text and with anything that changes how it is chunked."""
    settings = f"{CHUNKER_VERSION}:{MAX_CHARS}:{OVERLAP_CHARS}:{document.markdown}\0"
    return hashlib.sha256((settings + document.text).encode()).hexdigest()


def chunk_ids(source: str, chunks: Sequence[Chunk]) -> list[str]:
    """Ids from the source path and each chunk's text (repeated texts get a counter)."""
    prefix = hashlib.sha256(source.encode()).hexdigest()[:16]
    seen: dict[str, int] = defaultdict(int)
    ids = []
    for chunk in chunks:
        digest = hashlib.sha256(chunk.text.encode()).hexdigest()[:24]
        seen[digest] += 1
        ids.append(f"{prefix}-{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else ""))
    return ids


def _plan_document(document: Document, existing: dict[str, Metadata], plan: _Plan) -> None:
    doc_hash = document_hash(document)
    complete = existing and all(
        m.get("doc") == f"{doc_hash}:{len(existing)}" for m in existing.values()
    )
    if complete:
        plan.chunks += len(existing)
        plan.unchanged += len(existing)
        return
    chunks = chunk_document(document.text, markdown=document.markdown)
    ids = chunk_ids(document.source, chunks)
    plan.chunks += len(chunks)
    for chunk_id, chunk in zip(ids, chunks, strict=True):
        # Few keys on purpose: Chroma stores and indexes each key of each record as a row, and
        # every key costs ingestion throughput. The chunk's own hash is in its id.
        meta: Metadata = {
            "source": document.source,
            "chunk": chunk.index,
            "doc": f"{doc_hash}:{len(chunks)}",
        }
        if chunk_id not in existing:
            plan.add_ids.append(chunk_id)
            plan.add_texts.append(chunk.text)
            plan.add_metas.append(meta)
            continue
        plan.unchanged += 1
        if dict(existing[chunk_id]) != meta:
            plan.update_ids.append(chunk_id)
            plan.update_metas.append(meta)
    plan.delete_ids.extend(sorted(set(existing) - set(ids)))


async def ingest(
    store: VectorStore,
    embedder: Embedder,
    collection: str,
    documents: Sequence[Document],
    *,
    prune: bool = False,
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring ``collection`` up to date with ``documents``; see the module docstring."""
    await store.open_collection(collection, embedder.name, embedder.dimension)
    by_source: dict[str, dict[str, Metadata]] = defaultdict(dict)
    for record_id, meta in (await store.all_metadata(collection)).items():
        by_source[str(meta.get("source", ""))][record_id] = meta
    plan = _Plan()
    for document in documents:
        _plan_document(document, by_source.get(document.source, {}), plan)
    if prune:
        current = {d.source for d in documents}
        for source, records in sorted(by_source.items()):
            if source not in current:
                plan.delete_ids.extend(sorted(records))
    await _embed_and_write(
        store, embedder, collection, plan, batch_size=batch_size, progress=progress
    )
    await store.update_metadata(collection, plan.update_ids, plan.update_metas)
    await store.delete(collection, plan.delete_ids)
    return IngestReport(
        documents=len(documents),
        chunks=plan.chunks,
        added=len(plan.add_ids),
        unchanged=plan.unchanged,
        removed=len(plan.delete_ids),
    )


async def _embed_and_write(
    store: VectorStore,
    embedder: Embedder,
    collection: str,
    plan: _Plan,
    *,
    batch_size: int,
    progress: Progress | None,
) -> None:
    """Embed and add the new chunks in batches, embedding batch n+1 while n is written.

    The overlap pays against a Chroma server (another process writes). Against embedded Chroma
    it pays little: chromadb 1.5's ``add`` holds the GIL for its whole write, so the embedding
    thread waits (measured: within noise of embedding and writing in turn, docs/benchmarks.md)."""
    total = len(plan.add_ids)
    starts = list(range(0, total, batch_size))
    if not starts:
        return
    pending = asyncio.create_task(embedder.embed(plan.add_texts[:batch_size]))
    try:
        for n, start in enumerate(starts):
            vectors = await pending
            end = start + batch_size
            if n + 1 < len(starts):
                following = plan.add_texts[end : end + batch_size]
                pending = asyncio.create_task(embedder.embed(following))
            await store.add(
                collection,
                plan.add_ids[start:end],
                vectors,
                plan.add_texts[start:end],
                plan.add_metas[start:end],
            )
            if progress is not None:
                progress(min(end, total), total)
    finally:  # never leave an embedding running, nor its failure unretrieved
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pending


async def check_embedder(store: VectorStore, embedder: Embedder, name: str) -> None:
    """Refuse unless ``embedder`` is the one that filled the existing collection ``name``."""
    info = await store.recorded_embedder(name)
    if (info.embedder, info.dimension) != (embedder.name, embedder.dimension):
        raise CollectionRefused(
            f"collection {name!r} was built with {info.embedder} ({info.dimension}-d) but the "
            f"query embedder is {embedder.name} ({embedder.dimension}-d); search it with the "
            "same embedder"
        )


async def search(
    store: VectorStore, embedder: Embedder, collection: str, query: str, k: int = 5
) -> list[Hit]:
    """The ``k`` chunks of ``collection`` nearest to ``query``, best first."""
    if not query.strip():
        raise InvalidName("the search query is empty")
    if k < 1:
        raise InvalidName(f"top-k must be at least 1, not {k}")
    await check_embedder(store, embedder, collection)
    vector = await embedder.embed([query])
    return await store.query(collection, vector, k)
