"""The vector store going away: fail-open by default, fail-closed by flag (a real Chroma server)."""

from __future__ import annotations

import httpx
import openai
import pytest

from agentkube.api import sidecar_contract as sc
from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.settings import MemorySettings
from tests.memory.servers import ChromaServer
from tests.sidecar.conftest import running_proxy
from tests.standins.openai_server import Reply, ScriptedModel

QUESTION = [{"role": "user", "content": "Which port does the operator listen on?"}]


def test_with_chroma_down_requests_go_through_unenriched_with_a_warning_and_a_metric(
    server_knowledge: MemorySettings,
    chroma: ChromaServer,
    embedder: WordLlamaEmbedder,
    model: tuple[ScriptedModel, str],
) -> None:
    script = model[0]
    script.replies = [Reply(text="one"), Reply(text="two"), Reply(text="three")]
    with running_proxy(server_knowledge, embedder, model) as proxy:
        oa = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        with oa:
            up = oa.chat.completions.with_raw_response.create(model="m", messages=QUESTION)  # type: ignore[arg-type]
            chroma.kill()
            down = oa.chat.completions.with_raw_response.create(model="m", messages=QUESTION)  # type: ignore[arg-type]
            ready = httpx.get(f"{proxy.url}/readyz")
            chroma.start()
            back = oa.chat.completions.with_raw_response.create(model="m", messages=QUESTION)  # type: ignore[arg-type]
        page = httpx.get(f"{proxy.url}/metrics").text
    assert int(up.headers[sc.HEADER_CHUNKS]) >= 1
    assert down.parse().choices[0].message.content == "two"
    assert down.headers[sc.HEADER_CHUNKS] == "0"
    assert chroma.url in down.headers[sc.HEADER_WARNING]
    assert script.requests[1]["messages"] == QUESTION  # forwarded exactly as sent
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert int(back.headers[sc.HEADER_CHUNKS]) >= 1  # enriched again once the store is back
    assert "agentkube_rag_retrieval_failures_total 1.0" in page
    assert 'agentkube_rag_requests_total{outcome="failed_open"} 1.0' in page


def test_fail_closed_answers_503_and_sends_nothing_upstream(
    server_knowledge: MemorySettings,
    chroma: ChromaServer,
    embedder: WordLlamaEmbedder,
    model: tuple[ScriptedModel, str],
) -> None:
    with running_proxy(server_knowledge, embedder, model, fail_closed=True) as proxy:
        chroma.kill()
        oa = openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)
        with oa, pytest.raises(openai.InternalServerError) as caught:
            oa.chat.completions.create(model="m", messages=QUESTION)  # type: ignore[arg-type]
        ready = httpx.get(f"{proxy.url}/readyz")
    assert caught.value.status_code == 503
    assert chroma.url in caught.value.message
    assert ready.status_code == 503
    assert model[0].requests == []
