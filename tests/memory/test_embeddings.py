"""The local embedder loads from its wheel with no network; the endpoint client speaks the API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.embeddings.openai import OpenAIEmbedder
from agentkube.memory.errors import EmbedderFailure

OFFLINE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging
    from agentkube.memory.embeddings.local import WordLlamaEmbedder
    vectors = asyncio.run(WordLlamaEmbedder().embed(["offline text", "another one"]))
    handlers = len(logging.getLogger().handlers)
    print(json.dumps({"shape": list(vectors.shape), "root_handlers": handlers}))
    """
)


def test_the_local_embedder_loads_and_embeds_with_no_network_at_all(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to run a process without a network")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [unshare, "--net", "--map-root-user", sys.executable, "-c", OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shape": [2, 256], "root_handlers": 0}
    assert list(tmp_path.iterdir()) == []  # nothing cached or downloaded under HOME


async def test_local_vectors_are_unit_length_and_similar_texts_are_nearer(
    embedder: WordLlamaEmbedder,
) -> None:
    vectors = await embedder.embed(
        ["the cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing deadline"]
    )
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.name == "wordllama:l2_supercat-256"


def embeddings_endpoint(dimension: int, seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(
            {"path": request.url.path, "auth": request.headers.get("authorization"), **body}
        )
        rows = [
            {"index": i, "embedding": [float(len(text))] + [1.0] * (dimension - 1)}
            for i, text in enumerate(body["input"])
        ]
        return httpx.Response(200, json={"data": list(reversed(rows)), "model": body["model"]})

    return httpx.MockTransport(handle)


async def test_the_endpoint_client_batches_orders_by_index_and_normalises() -> None:
    seen: list[dict[str, object]] = []
    embedder = await OpenAIEmbedder.probe(
        "http://models.test/v1", "nomic", api_key="k", transport=embeddings_endpoint(4, seen)
    )
    embedder._batch_size = 2
    try:
        vectors = await embedder.embed(["a", "bbb", "cc"])
    finally:
        await embedder.aclose()
    assert embedder.dimension == 4 and embedder.name == "openai:nomic"
    assert [s["input"] for s in seen] == [["dimension probe"], ["a", "bbb"], ["cc"]]
    assert {s["path"] for s in seen} == {"/v1/embeddings"} and seen[0]["auth"] == "Bearer k"
    raw = np.asarray([[1, 1, 1, 1], [3, 1, 1, 1], [2, 1, 1, 1]], np.float32)
    assert np.allclose(vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True))


async def test_an_endpoint_error_names_the_url_and_status() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="overloaded"))
    embedder = OpenAIEmbedder("http://models.test/v1", "m", dimension=4, transport=transport)
    try:
        with pytest.raises(
            EmbedderFailure, match=r"http://models\.test/v1/embeddings answered 503"
        ):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()


async def test_an_endpoint_that_changes_dimension_is_refused() -> None:
    embedder = OpenAIEmbedder(
        "http://models.test/v1", "m", dimension=8, transport=embeddings_endpoint(4, [])
    )
    try:
        with pytest.raises(EmbedderFailure, match="returned 4-d vectors for m, expected 8"):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()


async def test_an_unreachable_endpoint_is_named() -> None:
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "m", dimension=4)
    try:
        with pytest.raises(
            EmbedderFailure, match=r"http://127\.0\.0\.1:9/v1/embeddings is unreachable"
        ):
            await embedder.embed(["x"])
    finally:
        await embedder.aclose()
