"""Ingestion is idempotent, replaces changed documents, prunes, and survives interruption."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agentkube.memory.embeddings import Vectors
from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.errors import CollectionRefused, EmbedderFailure
from agentkube.memory.ingestion import ingest, read_documents, search
from agentkube.memory.vectors import VectorStore


class CountingEmbedder:
    """The real local embedder, counting what it embeds and able to fail after N batches."""

    def __init__(self, inner: WordLlamaEmbedder, fail_after_batches: int | None = None) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.batches = 0
        self.fail_after = fail_after_batches

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise EmbedderFailure("interrupted on purpose")
        self.batches += 1
        self.texts.extend(texts)
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        pass


def write_corpus(root: Path, docs: int = 3, sections: int = 4) -> None:
    for d in range(docs):
        body = "\n\n".join(
            f"## Section {s}\n\nDocument {d} section {s} talks about topic-{d}-{s}. " * 3
            for s in range(sections)
        )
        (root / f"doc{d}.md").write_text(
            f"# Document {d}\n\nIntro {d}.\n\n{body}\n", encoding="utf-8"
        )


async def run(
    store: VectorStore, embedder: CountingEmbedder, root: Path, **kw: object
) -> dict[str, int]:
    documents = read_documents([root], warn=lambda message: None)
    report = await ingest(store, embedder, "kb1", documents, batch_size=4, **kw)  # type: ignore[arg-type]
    return report.summary()


async def test_ingesting_twice_embeds_and_writes_nothing_the_second_time(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path)
    first = await run(vector_store, CountingEmbedder(embedder), tmp_path)
    assert first == {"documents": 3, "chunks": 15, "added": 15, "unchanged": 0, "removed": 0}
    before = await vector_store.all_metadata("kb1")
    again = CountingEmbedder(embedder)
    second = await run(vector_store, again, tmp_path)
    assert second == {"documents": 3, "chunks": 15, "added": 0, "unchanged": 15, "removed": 0}
    assert again.texts == []
    assert await vector_store.all_metadata("kb1") == before


async def test_a_changed_document_re_embeds_only_its_changed_chunks_and_drops_the_old(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path)
    await run(vector_store, CountingEmbedder(embedder), tmp_path)
    doc = tmp_path / "doc1.md"
    doc.write_text(doc.read_text().replace("topic-1-2", "a rewritten topic"), encoding="utf-8")
    counting = CountingEmbedder(embedder)
    report = await run(vector_store, counting, tmp_path)
    assert report == {"documents": 3, "chunks": 15, "added": 1, "unchanged": 14, "removed": 1}
    assert len(counting.texts) == 1 and "a rewritten topic" in counting.texts[0]
    texts = [h.text for h in await search(vector_store, embedder, "kb1", "topic-1-2", k=15)]
    assert not any("topic-1-2" in t for t in texts)
    metas = await vector_store.all_metadata("kb1")
    assert sorted(m["chunk"] for m in metas.values() if m["source"] == str(doc)) == [0, 1, 2, 3, 4]


async def test_prune_removes_documents_that_are_no_longer_there(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path)
    await run(vector_store, CountingEmbedder(embedder), tmp_path)
    (tmp_path / "doc2.md").unlink()
    kept = await run(vector_store, CountingEmbedder(embedder), tmp_path)
    assert kept["removed"] == 0 and len(await vector_store.all_metadata("kb1")) == 15
    pruned = await run(vector_store, CountingEmbedder(embedder), tmp_path, prune=True)
    assert pruned == {"documents": 2, "chunks": 10, "added": 0, "unchanged": 10, "removed": 5}
    sources = {m["source"] for m in (await vector_store.all_metadata("kb1")).values()}
    assert sources == {str(tmp_path / "doc0.md"), str(tmp_path / "doc1.md")}


async def test_an_interrupted_ingestion_is_completed_by_running_it_again(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path)
    with pytest.raises(EmbedderFailure, match="interrupted"):
        await run(vector_store, CountingEmbedder(embedder, fail_after_batches=2), tmp_path)
    assert len(await vector_store.all_metadata("kb1")) == 8  # two batches of four landed
    rerun = CountingEmbedder(embedder)
    report = await run(vector_store, rerun, tmp_path)
    assert report == {"documents": 3, "chunks": 15, "added": 7, "unchanged": 8, "removed": 0}
    assert len(rerun.texts) == 7
    final = await run(vector_store, CountingEmbedder(embedder), tmp_path)
    assert final["added"] == 0 and final["unchanged"] == 15


async def test_an_interrupted_update_finishes_replacing_the_old_chunks(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path, docs=1, sections=8)
    await run(vector_store, CountingEmbedder(embedder), tmp_path)
    doc = tmp_path / "doc0.md"
    doc.write_text(doc.read_text().replace("talks about", "now discusses"), encoding="utf-8")
    with pytest.raises(EmbedderFailure):
        await run(vector_store, CountingEmbedder(embedder, fail_after_batches=1), tmp_path)
    report = await run(vector_store, CountingEmbedder(embedder), tmp_path)
    assert report["removed"] == 8 and report["chunks"] == 9
    texts = [h.text for h in await search(vector_store, embedder, "kb1", "talks about", k=20)]
    assert len(texts) == 9 and not any("talks about" in t for t in texts)


async def test_a_collection_of_another_embedder_is_refused(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    write_corpus(tmp_path, docs=1)
    await vector_store.open_collection("kb1", "openai:text-embedding-3-small", 1536)
    with pytest.raises(CollectionRefused, match="'kb1' holds 1536-d vectors"):
        await run(vector_store, CountingEmbedder(embedder), tmp_path)
    with pytest.raises(CollectionRefused, match="'kb1' was built with openai"):
        await search(vector_store, embedder, "kb1", "anything")


def test_files_that_are_not_utf8_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\ntext\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")  # not a text suffix: not even read
    warnings: list[str] = []
    documents = read_documents([tmp_path], warn=warnings.append)
    assert [Path(d.source).name for d in documents] == ["good.md"]
    assert warnings == [f"skipped {tmp_path / 'latin1.txt'}: not UTF-8 text"]


async def test_search_finds_the_chunk_about_the_query(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "animals.md").write_text(
        "# Animals\n\n## Cats\n\nCats purr and chase mice.\n\n"
        "## Ships\n\nContainer ships carry cargo across the ocean.\n",
        encoding="utf-8",
    )
    await run(vector_store, CountingEmbedder(embedder), tmp_path)
    hits = await search(vector_store, embedder, "kb1", "vessels transporting freight by sea", k=2)
    assert "Container ships" in hits[0].text and hits[0].score > hits[1].score
