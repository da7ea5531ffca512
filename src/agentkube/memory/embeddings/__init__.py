"""Embeddings: text in, unit-length float32 vectors out.

Two backends behind one :class:`Embedder` Protocol:

* :class:`~agentkube.memory.embeddings.local.WordLlamaEmbedder` — the local default. Its 256-d
  weights ship inside the ``wordllama`` wheel; nothing is downloaded at run time.
* :class:`~agentkube.memory.embeddings.openai.OpenAIEmbedder` — any OpenAI-compatible
  ``/v1/embeddings`` endpoint (for example a ``Model`` served on the GPU pool).

An embedder's :attr:`~Embedder.name` and :attr:`~Embedder.dimension` are recorded on every
collection it fills; a collection refuses vectors from any other embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""A ``(len(texts), dimension)`` array of L2-normalised rows."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Identifies the model and its weights, e.g. ``wordllama:l2_supercat-256``."""
        ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One normalised vector per text, in order."""
        ...

    async def aclose(self) -> None: ...


def normalised(vectors: Vectors) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), so cosine is a dot product."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


__all__ = ["Embedder", "Vectors", "normalised"]
