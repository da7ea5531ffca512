"""Vector collections: the :class:`VectorStore` Protocol and the values it passes.

A collection records the embedder that filled it (name and dimension) in its metadata when it is
created; opening it with another embedder is refused (:class:`CollectionRefused`), so vectors of
two models are never mixed. Vectors always come from us: the store never embeds text itself (a
Chroma default embedding function would download a model at run time).

Backends: :class:`~agentkube.memory.vectors.chroma.EmbeddedChroma` (a ``PersistentClient`` under
the data directory) and :class:`~agentkube.memory.vectors.chroma.ChromaServer` (``chroma run``,
reached over HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agentkube.memory.embeddings import Vectors
from agentkube.memory.errors import InvalidName

MetadataValue = str | int | float | bool
Metadata = Mapping[str, MetadataValue]

_COLLECTION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]")


def check_collection_name(name: str) -> str:
    """``name`` if a collection may be called that, else :class:`InvalidName`."""
    if not _COLLECTION.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"collection name {name!r} is invalid: use 3-512 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True, kw_only=True)
class CollectionInfo:
    name: str
    embedder: str
    dimension: int
    chunks: int


@dataclass(frozen=True, kw_only=True)
class Hit:
    id: str
    text: str
    score: float
    """Cosine similarity, 1.0 for the same direction."""
    metadata: Metadata = field(default_factory=dict)


class VectorStore(Protocol):
    @property
    def location(self) -> str:
        """Where the store is (URL or path), for messages."""
        ...

    async def open_collection(self, name: str, embedder: str, dimension: int) -> CollectionInfo:
        """The collection, created for this embedder if missing; refused if it holds another's."""
        ...

    async def describe(self, name: str) -> CollectionInfo:
        """An existing collection (:class:`CollectionNotFound` otherwise)."""
        ...

    async def recorded_embedder(self, name: str) -> CollectionInfo:
        """Like :meth:`describe` but without counting (``chunks`` is 0): cheap, for every query."""
        ...

    async def list_collections(self) -> list[CollectionInfo]:
        """Every collection of ours in this tenant (foreign ones are left out)."""
        ...

    async def delete_collection(self, name: str) -> None: ...

    async def add(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors,
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Write records the caller knows are new; an id already present keeps its old record.

        Cheaper than :meth:`upsert` (no look-up, no replacement of an old text); ingestion uses
        it for chunks its plan found missing, whose ids are derived from their text."""
        ...

    async def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors,
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Write records, replacing any with the same id."""
        ...

    async def update_metadata(
        self, name: str, ids: Sequence[str], metadatas: Sequence[Metadata]
    ) -> None:
        """Rewrite metadata only; vectors and texts stay."""
        ...

    async def all_metadata(self, name: str) -> dict[str, Metadata]:
        """Every record's id and metadata (no vectors), for planning an ingestion."""
        ...

    async def delete(self, name: str, ids: Sequence[str]) -> None: ...

    async def query(self, name: str, vector: Vectors, k: int) -> list[Hit]:
        """The ``k`` nearest records to one ``(1, dimension)`` vector, best first (fewer if the
        collection holds fewer)."""
        ...

    async def aclose(self) -> None: ...


__all__ = [
    "CollectionInfo",
    "Hit",
    "Metadata",
    "MetadataValue",
    "VectorStore",
    "check_collection_name",
]
