"""Embeddings from any OpenAI-compatible ``POST /v1/embeddings`` endpoint.

The transport is injectable (``httpx.MockTransport`` in tests, a real server otherwise). The
dimension is whatever the model returns; :meth:`OpenAIEmbedder.probe` asks once when it is not
configured. Requests are batched (``batch_size`` inputs each) and the rows are re-ordered by their
``index`` (the API does not promise order) and normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from agentkube.memory.embeddings import Vectors, normalised
from agentkube.memory.errors import EmbedderFailure


class OpenAIEmbedder:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        dimension: int,
        api_key: str | None = None,
        batch_size: int = 128,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._dimension = dimension
        self._batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    @classmethod
    async def probe(
        cls,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> OpenAIEmbedder:
        """An embedder whose dimension is learnt by embedding one short text."""
        embedder = cls(base_url, model, dimension=0, api_key=api_key, transport=transport)
        try:
            vectors = await embedder._request(["dimension probe"])
        except BaseException:
            await embedder.aclose()
            raise
        embedder._dimension = int(vectors.shape[1])
        return embedder

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> Vectors:
        parts = [
            await self._request(list(texts[i : i + self._batch_size]))
            for i in range(0, len(texts), self._batch_size)
        ]
        if not parts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = np.concatenate(parts)
        if self._dimension and vectors.shape[1] != self._dimension:
            raise EmbedderFailure(
                f"the embeddings endpoint {self.base_url} returned {vectors.shape[1]}-d vectors "
                f"for {self.model}, expected {self._dimension}"
            )
        return vectors

    async def _request(self, inputs: list[str]) -> Vectors:
        url = f"{self.base_url}/embeddings"
        try:
            response = await self._client.post(
                "/embeddings", json={"model": self.model, "input": inputs}
            )
        except httpx.HTTPError as e:
            raise EmbedderFailure(f"the embeddings endpoint {url} is unreachable ({e})") from e
        if response.status_code != 200:
            raise EmbedderFailure(
                f"the embeddings endpoint {url} answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        return self._parse(url, response, len(inputs))

    @staticmethod
    def _parse(url: str, response: httpx.Response, expected: int) -> Vectors:
        try:
            body: Any = response.json()
            rows = sorted(body["data"], key=lambda row: row["index"])
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise EmbedderFailure(f"the embeddings endpoint {url} sent a malformed reply") from e
        if vectors.ndim != 2 or vectors.shape[0] != expected:
            raise EmbedderFailure(
                f"the embeddings endpoint {url} sent {vectors.shape[0]} vectors "
                f"for {expected} texts"
            )
        return normalised(vectors)

    async def aclose(self) -> None:
        await self._client.aclose()
