"""One suite for both vector backends (Chroma embedded and a real `chroma run` server)."""

from __future__ import annotations

from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from agentkube.memory.errors import CollectionNotFound, CollectionRefused, InvalidName
from agentkube.memory.tenancy import CHROMA_DATABASE, chroma_tenant
from agentkube.memory.vectors import VectorStore
from agentkube.memory.vectors.chroma import ChromaServer, EmbeddedChroma


def unit(*rows: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def raw_client(store: VectorStore) -> Any:
    """A plain chromadb client on the same tenant, to plant collections we did not make."""
    tenant, settings = chroma_tenant(store_namespace(store)), Settings(anonymized_telemetry=False)
    if isinstance(store, EmbeddedChroma):
        return chromadb.PersistentClient(
            path=str(store.path), settings=settings, tenant=tenant, database=CHROMA_DATABASE
        )
    assert isinstance(store, ChromaServer)
    host, port = store.location.removeprefix("http://").split(":")
    return chromadb.HttpClient(
        host=host, port=int(port), settings=settings, tenant=tenant, database=CHROMA_DATABASE
    )


def store_namespace(store: VectorStore) -> str:
    return str(store._tenant).removeprefix("agentkube-")  # type: ignore[attr-defined]


def close_raw(client: Any) -> None:
    from agentkube.memory.vectors.chroma import _close_client

    _close_client(client)


async def test_nearest_records_come_back_best_first(vector_store: VectorStore) -> None:
    info = await vector_store.open_collection("kb-1", "test:3", 3)
    assert (info.embedder, info.dimension, info.chunks) == ("test:3", 3, 0)
    await vector_store.upsert(
        "kb-1",
        ["x", "y", "z"],
        unit([1, 0, 0], [0, 1, 0], [0, 0, 1]),
        ["about x", "about y", "about z"],
        [{"source": "x.md"}, {"source": "y.md"}, {"source": "z.md"}],
    )
    hits = await vector_store.query("kb-1", unit([0.1, 1, 0]), 2)
    assert [h.id for h in hits] == ["y", "x"]
    assert hits[0].text == "about y" and hits[0].metadata["source"] == "y.md"
    assert hits[0].score > 0.99 > hits[1].score


async def test_reopening_with_another_embedder_is_refused(vector_store: VectorStore) -> None:
    await vector_store.open_collection("kb-2", "test:3", 3)
    with pytest.raises(CollectionRefused, match=r"'kb-2' holds 3-d vectors of test:3"):
        await vector_store.open_collection("kb-2", "test:4", 4)
    with pytest.raises(CollectionRefused, match="kb-2"):
        await vector_store.open_collection("kb-2", "other-model", 3)


async def test_vectors_of_the_wrong_dimension_are_refused(vector_store: VectorStore) -> None:
    await vector_store.open_collection("kb-3", "test:3", 3)
    with pytest.raises(CollectionRefused, match="kb-3"):
        await vector_store.upsert("kb-3", ["a"], unit([1, 0, 0, 0]), ["a"], [{"source": "a"}])


async def test_a_collection_not_made_by_agentkube_is_refused_by_name(
    vector_store: VectorStore,
) -> None:
    await vector_store.list_collections()  # creates the tenant
    client = raw_client(vector_store)
    try:
        client.create_collection("foreign", embedding_function=None, metadata={"owner": "else"})
    finally:
        close_raw(client)
    with pytest.raises(CollectionRefused, match="'foreign' was not made by agentkube"):
        await vector_store.describe("foreign")
    with pytest.raises(CollectionRefused, match="foreign"):
        await vector_store.open_collection("foreign", "test:3", 3)
    assert await vector_store.list_collections() == []


async def test_a_collection_with_a_corrupt_record_is_refused_by_name(
    vector_store: VectorStore,
) -> None:
    await vector_store.list_collections()
    client = raw_client(vector_store)
    try:
        client.create_collection(
            "broken",
            embedding_function=None,
            metadata={"agentkube_schema": 1, "agentkube_embedder": "x", "agentkube_dimension": -3},
        )
    finally:
        close_raw(client)
    with pytest.raises(CollectionRefused, match="'broken' has a corrupt embedder record"):
        await vector_store.describe("broken")


async def test_collections_are_listed_with_their_embedder_and_size(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("beta", "test:3", 3)
    await vector_store.open_collection("alpha", "test:3", 3)
    await vector_store.upsert("alpha", ["a"], unit([1, 1, 0]), ["a"], [{"source": "a"}])
    listed = [(c.name, c.chunks, c.embedder) for c in await vector_store.list_collections()]
    assert listed == [("alpha", 1, "test:3"), ("beta", 0, "test:3")]


async def test_a_deleted_collection_is_gone(vector_store: VectorStore) -> None:
    await vector_store.open_collection("doomed", "test:3", 3)
    await vector_store.delete_collection("doomed")
    with pytest.raises(CollectionNotFound, match="'doomed' does not exist"):
        await vector_store.describe("doomed")
    with pytest.raises(CollectionNotFound):
        await vector_store.delete_collection("doomed")


async def test_metadata_updates_and_deletes_touch_only_the_named_records(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("kb-4", "test:3", 3)
    vectors = unit([1, 0, 0], [0, 1, 0])
    await vector_store.upsert("kb-4", ["a", "b"], vectors, ["A", "B"], [{"n": 1}, {"n": 2}])
    await vector_store.update_metadata("kb-4", ["a"], [{"n": 10}])
    await vector_store.delete("kb-4", ["b"])
    assert await vector_store.all_metadata("kb-4") == {"a": {"n": 10}}
    hits = await vector_store.query("kb-4", unit([1, 0, 0]), 1)
    assert hits[0].text == "A"


async def test_texts_are_kept_out_of_chromas_full_text_index_and_old_documents_still_read(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("kb-9", "test:3", 3)
    await vector_store.add("kb-9", ["new"], unit([1, 0, 0]), ["new text"], [{"source": "n"}])
    client = raw_client(vector_store)
    try:
        raw = client.get_collection("kb-9", embedding_function=None)
        assert raw.get(ids=["new"], include=["documents"])["documents"] == [None]
        raw.add(  # as earlier versions wrote records: the text as a Chroma document
            ids=["old"],
            embeddings=unit([0, 1, 0]),
            documents=["old text"],
            metadatas=[{"source": "o"}],
        )
    finally:
        close_raw(client)
    hits = await vector_store.query("kb-9", unit([1, 1, 0]), 2)
    assert sorted((h.id, h.text, dict(h.metadata)) for h in hits) == [
        ("new", "new text", {"source": "n"}),
        ("old", "old text", {"source": "o"}),
    ]
    assert await vector_store.all_metadata("kb-9") == {
        "new": {"source": "n"},
        "old": {"source": "o"},
    }


async def test_adding_an_id_already_there_keeps_its_old_record(vector_store: VectorStore) -> None:
    await vector_store.open_collection("kb-7", "test:3", 3)
    await vector_store.add("kb-7", ["a"], unit([1, 0, 0]), ["first"], [{"n": 1}])
    await vector_store.add(
        "kb-7", ["a", "b"], unit([1, 0, 0], [0, 1, 0]), ["second", "B"], [{"n": 2}, {"n": 3}]
    )
    assert await vector_store.all_metadata("kb-7") == {"a": {"n": 1}, "b": {"n": 3}}
    assert (await vector_store.query("kb-7", unit([1, 0, 0]), 1))[0].text == "first"
    await vector_store.upsert("kb-7", ["a"], unit([1, 0, 0]), ["third"], [{"n": 4}])
    assert (await vector_store.query("kb-7", unit([1, 0, 0]), 1))[0].text == "third"


async def test_a_write_larger_than_chromas_batch_limit_lands_whole(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("kb-8", "test:3", 3)
    count = 6000  # chromadb refuses more than 5,461 records in one call
    ids = [f"r{i}" for i in range(count)]
    vectors = np.tile(unit([1, 2, 3]), (count, 1))
    await vector_store.add("kb-8", ids, vectors, ids, [{"n": i} for i in range(count)])
    assert (await vector_store.describe("kb-8")).chunks == count
    await vector_store.upsert("kb-8", ids, vectors, ids, [{"n": -i} for i in range(count)])
    assert (await vector_store.all_metadata("kb-8"))["r5999"] == {"n": -5999}


@pytest.mark.parametrize("bad", ["ab", "-starts-with-dash", "has space", "a..b", "x" * 600])
async def test_unusable_collection_names_are_refused(vector_store: VectorStore, bad: str) -> None:
    with pytest.raises(InvalidName, match="collection name"):
        await vector_store.open_collection(bad, "test:3", 3)


async def test_asking_for_more_records_than_there_are_returns_what_there_is(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("kb-5", "test:3", 3)
    assert await vector_store.query("kb-5", unit([1, 0, 0]), 10) == []
    await vector_store.upsert("kb-5", ["a"], unit([1, 0, 0]), ["A"], [{"n": 1}])
    assert [h.id for h in await vector_store.query("kb-5", unit([1, 0, 0]), 10)] == ["a"]


async def test_a_collection_deleted_by_another_client_is_reported_missing(
    vector_store: VectorStore,
) -> None:
    await vector_store.open_collection("kb-6", "test:3", 3)
    await vector_store.upsert("kb-6", ["a"], unit([1, 0, 0]), ["A"], [{"n": 1}])
    assert len(await vector_store.query("kb-6", unit([1, 0, 0]), 1)) == 1
    other = (
        EmbeddedChroma(vector_store.path, store_namespace(vector_store))
        if isinstance(vector_store, EmbeddedChroma)
        else ChromaServer(vector_store.location, store_namespace(vector_store))
    )
    try:
        await other.delete_collection("kb-6")
    finally:
        await other.aclose()
    with pytest.raises(CollectionNotFound):
        await vector_store.query("kb-6", unit([1, 0, 0]), 1)
