"""Errors of the memory layer.

    AgentkubeError
    ├── UserError
    │   └── MemoryUserError            bad input to memory: fix the flag, name or file
    │       ├── InvalidName            a namespace, collection or key that cannot be used
    │       ├── CollectionNotFound     the named collection does not exist
    │       └── CollectionRefused      the collection exists but is not ours, is corrupt, or was
    │                                  built by another embedder (never mix vectors)
    └── RuntimeFailure
        └── MemoryFailure              something failed while running
            ├── StoreUnavailable       a state or vector store cannot be reached (names its URL)
            ├── AccessDenied           the store refused this tenant (ACL, credentials)
            └── EmbedderFailure        the embedding model cannot load or the endpoint failed

Every message is one line that names the thing (URL, collection, file) and, where there is one,
the fix; the CLI prints it without a traceback.
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class MemoryUserError(UserError):
    """Bad input to the memory layer."""


class InvalidName(MemoryUserError):
    """A namespace, collection or key name that cannot be used."""


class CollectionNotFound(MemoryUserError):
    """The named collection does not exist."""


class CollectionRefused(MemoryUserError):
    """The collection is foreign, corrupt or built by a different embedder."""


class MemoryFailure(RuntimeFailure):
    """A memory operation failed at run time."""


class StoreUnavailable(MemoryFailure):
    """A store cannot be reached; the message names its URL (or path)."""

    def __init__(self, kind: str, location: str, reason: str) -> None:
        super().__init__(f"{kind} at {location} is unavailable ({reason}); check it is running")
        self.kind = kind
        self.location = location


class AccessDenied(MemoryFailure):
    """The store refused the operation for this tenant's credentials."""


class EmbedderFailure(MemoryFailure):
    """The embedding model cannot be loaded or the embeddings endpoint failed."""
