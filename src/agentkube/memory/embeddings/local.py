"""The local embedder: wordllama's 256-d static embeddings, shipped inside its PyPI wheel.

wordllama is a *static* embedding model: each token has one fixed vector (distilled from a large
LLM's embedding table) and a text is the average of its tokens. It needs no GPU and embeds tens
of thousands of chunks a second on one core, but it has no context: word order and negation are
invisible, and it ranks far below transformer embedders on retrieval benchmarks. It is a sound
default for keyword-ish knowledge lookups offline; point :class:`OpenAIEmbedder` at a real model
for quality.

Two quirks of its loader are handled here: it looks for the tokenizer in a ``tokenizer`` folder
while the wheel ships ``tokenizers``, so the package directory is passed as ``cache_dir`` (where it
looks second); and ``disable_download=True`` makes a missing file an error instead of a download.
Importing it calls ``logging.basicConfig(level=INFO)``; the root logger is restored afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentkube.memory.embeddings import Vectors, normalised
from agentkube.memory.errors import EmbedderFailure

CONFIG = "l2_supercat"
DIMENSION = 256


def _import_wordllama() -> Any:
    """The ``wordllama`` module, imported without letting it configure the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module("wordllama")
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def load_wordllama(config: str = CONFIG, dimension: int = DIMENSION) -> Any:
    """The wordllama model from the weights inside its wheel; never downloads."""
    try:
        module = _import_wordllama()
    except ImportError as e:
        raise EmbedderFailure(
            f"the local embedder needs the wordllama package ({e}); reinstall agentkube"
        ) from e
    package_dir = Path(module.__file__).parent
    try:
        return module.WordLlama.load(
            config, dim=dimension, cache_dir=package_dir, disable_download=True
        )
    except (FileNotFoundError, ValueError) as e:
        raise EmbedderFailure(f"cannot load wordllama {config}-{dimension}: {e}") from e


class WordLlamaEmbedder:
    """wordllama ``l2_supercat`` at 256 dimensions; loaded on first use, in a thread."""

    def __init__(self, config: str = CONFIG, dimension: int = DIMENSION) -> None:
        self._config = config
        self._dimension = dimension
        self._model: Any = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"wordllama:{self._config}-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(load_wordllama, self._config, self._dimension)
        return self._model

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        model = await self._loaded()
        return await asyncio.to_thread(self._embed, model, list(texts))

    @staticmethod
    def _embed(model: Any, texts: list[str]) -> Vectors:
        raw = model.embed(texts, norm=False, batch_size=256)
        return normalised(np.asarray(raw, dtype=np.float32))

    async def aclose(self) -> None:
        self._model = None
