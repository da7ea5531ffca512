"""Chroma as the vector store: embedded (``PersistentClient``) or a server (``HttpClient``).

Both backends share one adapter; they differ in how the client is made and how the store is
named in messages. Chroma's clients are synchronous, so every call runs in a thread.

Chroma is never allowed to embed: collections are created with ``embedding_function=None`` and
every write and query passes vectors. (Its default embedding function downloads a model from the
internet at first use, which a cluster or an offline machine cannot do — and would silently mix
another model's vectors into ours.) Telemetry is off (``anonymized_telemetry=False``).

A record's text is kept in its metadata (``agentkube_text``), not as a Chroma *document*: Chroma
indexes every document in an SQLite FTS5 trigram table (in 1.5 even when the collection's schema
disables full-text search), which cost a third of embedded write throughput, and nothing here
searches text. Records written as documents by earlier versions are still read.

Each namespace is its own tenant with one database (:mod:`agentkube.memory.tenancy`); the tenant is
created on first use. Two details of chromadb 1.x are worked around here: its HTTP client has no
timeout and does not close its ``httpx.Client`` on :meth:`close`, so both are set/closed on the
client's session.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import httpx

from agentkube.memory.embeddings import Vectors
from agentkube.memory.errors import (
    CollectionNotFound,
    CollectionRefused,
    InvalidName,
    MemoryFailure,
    StoreUnavailable,
)
from agentkube.memory.tenancy import CHROMA_DATABASE, DEFAULT_NAMESPACE, chroma_tenant
from agentkube.memory.vectors import CollectionInfo, Hit, Metadata, check_collection_name

SCHEMA_KEY = "agentkube_schema"
EMBEDDER_KEY = "agentkube_embedder"
DIMENSION_KEY = "agentkube_dimension"
TEXT_KEY = "agentkube_text"
SCHEMA = 1
PAGE = 5000
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

T = TypeVar("T")


def _info(name: str, metadata: Any, count: int) -> CollectionInfo:
    """The collection's embedder record; :class:`CollectionRefused` if it is not ours or broken."""
    meta = dict(metadata or {})
    if SCHEMA_KEY not in meta:
        raise CollectionRefused(
            f"collection {name!r} was not made by agentkube (no embedder recorded); "
            "use another name or delete it"
        )
    embedder, dimension = meta.get(EMBEDDER_KEY), meta.get(DIMENSION_KEY)
    if meta[SCHEMA_KEY] != SCHEMA or not isinstance(embedder, str) or not _positive(dimension):
        raise CollectionRefused(
            f"collection {name!r} has a corrupt embedder record ({meta!r}); delete and re-ingest it"
        )
    assert isinstance(dimension, int)
    return CollectionInfo(name=name, embedder=embedder, dimension=dimension, chunks=count)


def _check_dimension(name: str, collection: Any, vectors: Vectors) -> None:
    """Chroma fixes a collection's dimension only at its first write; ours is fixed at creation."""
    info = _info(name, collection.metadata, 0)
    if vectors.ndim != 2 or vectors.shape[1] != info.dimension:
        got = vectors.shape[-1] if vectors.ndim else 0
        raise CollectionRefused(
            f"collection {name!r} holds {info.dimension}-d vectors of {info.embedder}; "
            f"refusing {got}-d vectors"
        )


def _text(metadata: Any, document: str | None) -> str:
    """A record's text: in its metadata, or its document if an earlier version wrote it."""
    text = (metadata or {}).get(TEXT_KEY)
    return text if isinstance(text, str) else document or ""


def _without_text(metadata: Any) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k != TEXT_KEY}


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Records(NamedTuple):
    """One write's rows, side by side."""

    ids: list[str]
    vectors: Vectors
    texts: list[str]
    metadatas: Any


class ChromaStore:
    """The shared adapter; use :class:`EmbeddedChroma` or :class:`ChromaServer`."""

    kind = "vector store"

    def __init__(self, location: str, namespace: str) -> None:
        self._location = location
        self._tenant = chroma_tenant(namespace)
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    @property
    def location(self) -> str:
        return self._location

    # -- connecting -------------------------------------------------------------------------

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _connect(self) -> Any:
        client = self._make_client()
        try:
            admin = client._admin_client  # the client's own admin handle (same system)
            try:
                admin.get_tenant(self._tenant)
            except Exception as e:
                if not _is_not_found(e):
                    raise
                admin.create_tenant(self._tenant)
            try:
                admin.get_database(CHROMA_DATABASE, tenant=self._tenant)
            except Exception as e:
                if not _is_not_found(e):
                    raise
                admin.create_database(CHROMA_DATABASE, tenant=self._tenant)
            client.set_tenant(self._tenant, CHROMA_DATABASE)
        except BaseException:
            _close_client(client)
            raise
        return client

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(client, *args)`` in a thread; connect first; translate failures."""
        async with self._lock:
            if self._client is None:
                self._client = await self._guarded(self._connect)
        return await self._guarded(functools.partial(fn, self._client, *args))

    async def _guarded(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (CollectionNotFound, CollectionRefused, InvalidName):
            raise
        except (httpx.TransportError, ConnectionError) as e:
            raise StoreUnavailable(self.kind, self._location, _reason(e)) from e
        except ValueError as e:
            if "could not connect" in str(e).lower():
                raise StoreUnavailable(self.kind, self._location, "connection refused") from e
            raise MemoryFailure(f"{self.kind} at {self._location}: {e}") from e
        except Exception as e:
            if _is_not_found(e):  # e.g. deleted by another process since we cached its handle
                self._collections.clear()
                raise CollectionNotFound(f"{self.kind} at {self._location}: {e}") from e
            if type(e).__module__.startswith("chromadb"):
                raise MemoryFailure(f"{self.kind} at {self._location}: {e}") from e
            raise

    def _collection(self, client: Any, name: str) -> Any:
        collection = self._collections.get(name)
        if collection is None:
            try:
                collection = client.get_collection(name, embedding_function=None)
            except Exception as e:
                if _is_not_found(e):
                    raise CollectionNotFound(
                        f"collection {name!r} does not exist in {self._location}; "
                        "ingest into it first (agentkube memory ingest)"
                    ) from e
                raise
            _info(name, collection.metadata, 0)
            self._collections[name] = collection
        return collection

    # -- collections ------------------------------------------------------------------------

    async def open_collection(self, name: str, embedder: str, dimension: int) -> CollectionInfo:
        check_collection_name(name)
        return await self._call(self._open, name, embedder, dimension)

    def _open(self, client: Any, name: str, embedder: str, dimension: int) -> CollectionInfo:
        collection = client.get_or_create_collection(
            name,
            embedding_function=None,
            metadata={SCHEMA_KEY: SCHEMA, EMBEDDER_KEY: embedder, DIMENSION_KEY: dimension},
            configuration={"hnsw": {"space": "cosine"}},
        )
        info = _info(name, collection.metadata, collection.count())
        if (info.embedder, info.dimension) != (embedder, dimension):
            raise CollectionRefused(
                f"collection {name!r} holds {info.dimension}-d vectors of {info.embedder}, "
                f"not {dimension}-d vectors of {embedder}; use the same embedder or another "
                "collection"
            )
        self._collections[name] = collection
        return info

    async def describe(self, name: str) -> CollectionInfo:
        check_collection_name(name)
        return await self._call(self._describe, name)

    def _describe(self, client: Any, name: str) -> CollectionInfo:
        collection = self._collection(client, name)
        return _info(name, collection.metadata, collection.count())

    async def recorded_embedder(self, name: str) -> CollectionInfo:
        check_collection_name(name)
        collection = self._collections.get(name)
        if collection is not None:  # metadata fixed at creation: no round trip needed
            return _info(name, collection.metadata, 0)
        return await self._call(
            lambda client: _info(name, self._collection(client, name).metadata, 0)
        )

    async def list_collections(self) -> list[CollectionInfo]:
        return await self._call(self._list)

    def _list(self, client: Any) -> list[CollectionInfo]:
        found = []
        for collection in client.list_collections():
            try:
                found.append(_info(collection.name, collection.metadata, collection.count()))
            except CollectionRefused:
                continue
        return sorted(found, key=lambda info: info.name)

    async def delete_collection(self, name: str) -> None:
        await self.describe(name)
        await self._call(self._delete_collection, name)

    def _delete_collection(self, client: Any, name: str) -> None:
        self._collections.pop(name, None)
        client.delete_collection(name)

    # -- records ----------------------------------------------------------------------------

    async def add(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors,
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        await self._store("add", name, _Records(list(ids), vectors, list(texts), list(metadatas)))

    async def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors,
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        await self._store(
            "upsert", name, _Records(list(ids), vectors, list(texts), list(metadatas))
        )

    async def _store(self, operation: str, name: str, records: _Records) -> None:
        if records.ids:
            await self._call(self._write, name, records, operation)

    def _write(self, client: Any, name: str, records: _Records, operation: str) -> None:
        """``collection.add`` or ``.upsert``, in as few calls as the client's batch limit allows."""
        ids, vectors, texts, metas = records
        collection = self._collection(client, name)
        _check_dimension(name, collection, vectors)
        with_text = [{**meta, TEXT_KEY: text} for meta, text in zip(metas, texts, strict=True)]
        write = getattr(collection, operation)
        limit = int(client.get_max_batch_size())  # -1 from a server that does not say
        step = limit if limit > 0 else max(1, len(ids))
        try:
            for start in range(0, len(ids), step):
                rows = slice(start, start + step)
                write(ids=ids[rows], embeddings=vectors[rows], metadatas=with_text[rows])
        except Exception as e:
            if "dimension" in str(e).lower():
                raise CollectionRefused(f"collection {name!r}: {e}") from e
            raise

    async def update_metadata(
        self, name: str, ids: Sequence[str], metadatas: Sequence[Metadata]
    ) -> None:
        if ids:
            await self._call(self._update, name, list(ids), list(metadatas))

    def _update(self, client: Any, name: str, ids: list[str], metadatas: Any) -> None:
        self._collection(client, name).update(ids=ids, metadatas=metadatas)

    async def all_metadata(self, name: str) -> dict[str, Metadata]:
        return await self._call(self._all_metadata, name)

    def _all_metadata(self, client: Any, name: str) -> dict[str, Metadata]:
        collection = self._collection(client, name)
        found: dict[str, Metadata] = {}
        offset = 0
        while True:
            page = collection.get(include=["metadatas"], limit=PAGE, offset=offset)
            for record_id, metadata in zip(page["ids"], page["metadatas"] or [], strict=False):
                found[record_id] = _without_text(metadata)
            if len(page["ids"]) < PAGE:
                return found
            offset += PAGE

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            await self._call(self._delete, name, list(ids))

    def _delete(self, client: Any, name: str, ids: list[str]) -> None:
        collection = self._collection(client, name)
        for start in range(0, len(ids), PAGE):
            collection.delete(ids=ids[start : start + PAGE])

    async def query(self, name: str, vector: Vectors, k: int) -> list[Hit]:
        return await self._call(self._query, name, vector, k)

    def _query(self, client: Any, name: str, vector: Vectors, k: int) -> list[Hit]:
        collection = self._collection(client, name)
        _check_dimension(name, collection, vector)
        result = collection.query(
            query_embeddings=vector, n_results=k, include=["documents", "metadatas", "distances"]
        )
        ids, docs = result["ids"][0], (result["documents"] or [[]])[0]
        metas, distances = (result["metadatas"] or [[]])[0], (result["distances"] or [[]])[0]
        return [
            Hit(id=i, text=_text(m, d), score=1.0 - float(dist), metadata=_without_text(m))
            for i, d, m, dist in zip(ids, docs, metas, distances, strict=True)
        ]

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._collections.clear()
        if client is not None:
            await asyncio.to_thread(_close_client, client)


class EmbeddedChroma(ChromaStore):
    """Chroma in this process, persisted under ``path``."""

    def __init__(self, path: Path, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(str(path), namespace)
        self.path = path

    def _make_client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable(self.kind, str(self.path), str(e)) from e
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        return chromadb.PersistentClient(path=str(self.path), settings=settings)


class ChromaServer(ChromaStore):
    """A Chroma server (``chroma run``) at ``url``, e.g. ``http://chroma.agentkube-memory:8000``."""

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidName(f"vector store URL {url!r} must look like http://HOST:PORT")
        super().__init__(url.rstrip("/"), namespace)
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 8000)
        self._ssl = parts.scheme == "https"
        self._headers = headers or {}

    def _make_client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(
            host=self._host,
            port=self._port,
            ssl=self._ssl,
            headers=self._headers,
            settings=Settings(anonymized_telemetry=False),
        )
        session = _http_session(client)
        if session is not None:
            session.timeout = HTTP_TIMEOUT
        return client


def _http_session(client: Any) -> httpx.Client | None:
    session = getattr(getattr(client, "_server", None), "_session", None)
    return session if isinstance(session, httpx.Client) else None


def _close_client(client: Any) -> None:
    # The HTTP client's internal admin client has a system (and an httpx.Client) of its own.
    sessions = [_http_session(client), _http_session(getattr(client, "_admin_client", None))]
    client.close()
    for session in sessions:
        if session is not None:
            session.close()


def _is_not_found(error: Exception) -> bool:
    return type(error).__name__ in ("NotFoundError", "NotFound") or "does not exist" in str(error)


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
