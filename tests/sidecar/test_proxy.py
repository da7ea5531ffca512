"""The RAG proxy with the real OpenAI client, in front of the stand-in model, on loopback."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest

from agentkube.api import sidecar_contract as sc
from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.settings import MemorySettings
from tests.sidecar.conftest import COLLECTION, OTHER, RunningProxy, running_proxy
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall

QUESTION = "What is the agentkube operator nicknamed, and which port does it listen on?"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "look something up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def client(proxy: RunningProxy, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0, **kw)  # type: ignore[arg-type]


def injected(request: dict[str, object]) -> list[str]:
    messages = request["messages"]
    assert isinstance(messages, list)
    return [
        m["content"]
        for m in messages
        if m["role"] == "system" and "Context retrieved" in str(m["content"])
    ]


def test_a_plain_question_reaches_the_model_with_context_and_citations(
    proxy: RunningProxy,
) -> None:
    proxy.script.replies = [Reply(text="Orca, on port 7443 [1].")]
    with client(proxy) as oa:
        raw = oa.chat.completions.with_raw_response.create(
            model="standin-model",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": QUESTION},
            ],
        )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Orca, on port 7443 [1]."
    sent = proxy.script.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user"]
    assert sent[0]["content"] == "You are terse."  # the agent's instructions stay first
    context = sent[1]["content"]
    assert "[1] source: /docs/operator.md" in context and "7443" in context
    assert int(raw.headers[sc.HEADER_CHUNKS]) >= 1
    assert raw.headers[sc.HEADER_SOURCES].split(",")[0] == "/docs/operator.md"
    assert sent[2] == {"role": "user", "content": QUESTION}


def test_requests_with_tools_are_enriched_through_the_whole_tool_loop(
    proxy: RunningProxy,
) -> None:
    proxy.script.replies = [
        Reply(tool_calls=[ToolCall("lookup", {"q": "port"})]),
        Reply(text="7443"),
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": QUESTION}]
    with client(proxy) as oa:
        first = oa.chat.completions.create(model="m", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "port 7443"},
        ]
        oa.chat.completions.create(model="m", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    one, two = proxy.script.requests
    assert one["tools"] == TOOLS and two["tools"] == TOOLS
    assert injected(one) and injected(two) == injected(one)  # same question, same context
    # The assistant's tool call and the tool result are forwarded exactly as sent.
    assert two["messages"][-2:] == messages[-2:]


def test_streamed_chunks_reach_the_client_before_the_upstream_finishes(
    proxy: RunningProxy,
) -> None:
    gate = threading.Event()
    proxy.script.stream_gate = gate
    proxy.script.replies = [Reply(text="Orca listens on 7443.")]
    pieces: list[str] = []
    with client(proxy) as oa:
        stream = oa.chat.completions.create(
            model="m", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                # The upstream holds the rest until this is set: the first piece got here alone.
                if len(pieces) == 1:
                    assert not gate.is_set()
                    gate.set()
    assert pieces[0] == "Orca" and "".join(pieces) == "Orca listens on 7443."
    assert injected(proxy.script.requests[0])


def test_other_paths_pass_through_unchanged(proxy: RunningProxy) -> None:
    with client(proxy) as oa:
        assert [m.id for m in oa.models.list()] == ["standin-model"]
        vectors = oa.embeddings.create(model="e", input=["abc", "hello"])
    assert [d.embedding for d in vectors.data] == [[3.0, 1.0, 0.0], [5.0, 1.0, 0.0]]
    assert proxy.script.requests[0]["input"] == ["abc", "hello"]  # the body as the client sent it
    direct = httpx.get(f"{proxy.upstream}/unknown?x=1")
    proxied = httpx.get(f"{proxy.base_url}/unknown?x=1")
    assert (
        (proxied.status_code, proxied.content)
        == (direct.status_code, direct.content)
        == (
            404,
            b'{"detail":"Not Found"}',
        )
    )


def test_upstream_error_statuses_and_bodies_reach_the_client_unchanged(
    proxy: RunningProxy,
) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limited"}}
    proxy.script.replies = [Reply(status=429, error=error)]
    with client(proxy) as oa, pytest.raises(openai.RateLimitError) as caught:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}])
    assert caught.value.status_code == 429
    assert caught.value.response.json() == error


def test_the_opt_out_header_and_requests_without_user_text_pass_through(
    proxy: RunningProxy,
) -> None:
    proxy.script.replies = [Reply(text="a"), Reply(text="b")]
    asked = [{"role": "user", "content": QUESTION}]
    silent = [{"role": "system", "content": "hello"}]
    with client(proxy) as oa:
        off = oa.chat.completions.with_raw_response.create(
            model="m",
            messages=asked,  # type: ignore[arg-type]
            extra_headers={sc.HEADER_RAG: "off"},
        )
        oa.chat.completions.create(model="m", messages=silent)  # type: ignore[arg-type]
    assert off.headers[sc.HEADER_CHUNKS] == "0"
    assert [r["messages"] for r in proxy.script.requests] == [asked, silent]
    assert sc.HEADER_RAG not in proxy.script.headers[0]  # the proxy's own header stays here


def test_authorization_and_client_headers_reach_the_upstream(proxy: RunningProxy) -> None:
    proxy.script.replies = [Reply(text="ok")]
    with client(proxy) as oa:
        oa.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": QUESTION}],
            extra_headers={"x-trace": "abc"},
        )
    headers = proxy.script.headers[0]
    assert headers["authorization"] == "Bearer sk-test" and headers["x-trace"] == "abc"


def test_a_collection_header_may_narrow_but_never_widen(proxy: RunningProxy) -> None:
    proxy.script.replies = [Reply(text="ok")]
    with client(proxy) as oa:
        narrow = oa.chat.completions.with_raw_response.create(
            model="m",
            messages=[{"role": "user", "content": "What did release 2 rename?"}],
            extra_headers={sc.HEADER_COLLECTION: OTHER},
        )
        with pytest.raises(openai.PermissionDeniedError) as caught:
            oa.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": QUESTION}],
                extra_headers={sc.HEADER_COLLECTION: f"{COLLECTION},secrets"},
            )
    assert narrow.headers[sc.HEADER_SOURCES] == "/notes/v2.md"
    assert "'secrets' is not one this proxy reads" in caught.value.message
    assert len(proxy.script.requests) == 1  # the refused request never went upstream


def test_an_oversize_body_is_refused_with_413_before_it_is_forwarded(
    embedded_knowledge: MemorySettings,
    embedder: WordLlamaEmbedder,
    model: tuple[ScriptedModel, str],
) -> None:
    with running_proxy(embedded_knowledge, embedder, model, max_body_bytes=4096) as proxy:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})
        declared = httpx.post(f"{proxy.base_url}/chat/completions", content=body)

        def chunked() -> object:
            yield body.encode()[:3000]
            yield body.encode()[3000:]

        streamed = httpx.post(f"{proxy.base_url}/chat/completions", content=chunked())  # type: ignore[arg-type]
    assert declared.status_code == streamed.status_code == 413
    assert "over 4096 bytes" in declared.json()["error"]["message"]
    assert model[0].requests == []


def test_health_readiness_and_metrics_report_what_happened(proxy: RunningProxy) -> None:
    proxy.script.replies = [Reply(text="ok")]
    with client(proxy) as oa:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}])
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    page = httpx.get(f"{proxy.url}/metrics").text
    assert 'agentkube_rag_requests_total{outcome="enriched"} 1.0' in page
    assert "agentkube_rag_retrieval_seconds_count 1.0" in page
    assert 'agentkube_rag_upstream_seconds_count{route="chat"} 1.0' in page
    assert "agentkube_rag_chunks_injected_total" in page


def test_an_unreachable_upstream_is_a_502_in_the_openai_error_shape(
    embedded_knowledge: MemorySettings, embedder: WordLlamaEmbedder
) -> None:
    from tests.memory.servers import free_port

    dead = (ScriptedModel(), f"http://127.0.0.1:{free_port()}/v1")
    with running_proxy(embedded_knowledge, embedder, dead) as proxy:
        with client(proxy) as oa, pytest.raises(openai.APIStatusError) as caught:
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}])
        page = httpx.get(f"{proxy.url}/metrics").text
    assert caught.value.status_code == 502
    assert "unreachable" in caught.value.message
    assert "agentkube_rag_upstream_errors_total 1.0" in page
