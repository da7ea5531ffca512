"""The real OpenAI client path, end to end, against the stand-in model server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.errors import ModelUnreachable
from agentkube.runtime.events import RunEvent
from agentkube.runtime.tools import WebSettings
from tests.runtime.helpers import agent_from
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


@pytest.fixture
def web_page() -> Iterator[str]:
    app = FastAPI()

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return (
            "<html><head><title>Pools</title><script>evil()</script></head>"
            "<body><h1>Node pools</h1><p>GPU nodes carry accelerator=nvidia-tesla.</p>"
            "</body></html>"
        )

    with serve(app) as url:
        yield f"{url}/page"


def _settings(base_url: str, **kw: object) -> RuntimeSettings:
    return RuntimeSettings(environ={}, base_url=base_url, **kw)  # type: ignore[arg-type]


async def test_tool_call_and_streamed_answer_round_trip_through_the_endpoint(
    model_server: tuple[ScriptedModel, str], web_page: str
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("web-browser", {"url": web_page})]),
        Reply(text="GPU nodes are labelled accelerator=nvidia-tesla."),
    ]
    agent = agent_from("{model: standin-model, tools: [web-browser]}")
    settings = _settings(base_url, web=WebSettings(allow_private=True))
    events: list[RunEvent] = []
    async with open_runtime(agent, [], settings) as runtime:
        outcome = await runtime.run("What label do GPU nodes carry?", emit=events.append)

    assert outcome.output == "GPU nodes are labelled accelerator=nvidia-tesla."
    assert outcome.model == f"standin-model @ {base_url}"
    [call] = outcome.tool_calls
    assert call.ok
    assert "accelerator=nvidia-tesla" in call.result
    assert "evil()" not in call.result
    # The server saw a streamed request offering our tool, then the tool's result.
    first, second = script.requests
    assert first["stream"] is True
    assert [t["function"]["name"] for t in first["tools"]] == ["web-browser"]
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert "accelerator=nvidia-tesla" in json.dumps(tool_messages)
    deltas = "".join(e.data["text"] for e in events if e.kind == "text.delta")
    assert deltas == outcome.output


async def test_model_from_a_model_manifest_is_used(model_server: tuple[ScriptedModel, str]) -> None:
    from agentkube.api.loading import parse_documents
    from agentkube.api.models import Agent, Model

    script, base_url = model_server
    script.replies = [Reply(text="hello from the endpoint")]
    docs = parse_documents(
        f"apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {{name: brain}}\n"
        f"spec: {{endpoint: {{url: '{base_url}', model: served-id}}}}\n---\n"
        "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: a}\nspec: {model: brain}\n"
    )
    models = [d for d in docs if isinstance(d, Model)]
    agent = next(d for d in docs if isinstance(d, Agent))
    async with open_runtime(agent, models, RuntimeSettings(environ={})) as runtime:
        outcome = await runtime.run("hi")
    assert outcome.output == "hello from the endpoint"
    assert script.requests[0]["model"] == "served-id"


async def test_unreachable_endpoint_is_a_runtime_failure_naming_the_url() -> None:
    agent = agent_from("{model: m}")
    url = "http://127.0.0.1:9/v1"
    async with open_runtime(agent, [], _settings(url)) as runtime:
        with pytest.raises(ModelUnreachable, match=r"127\.0\.0\.1:9/v1 is unreachable"):
            await runtime.run("hi")


async def test_web_browser_refuses_a_page_larger_than_its_size_limit(
    model_server: tuple[ScriptedModel, str], web_page: str
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("web-browser", {"url": web_page})]),
        Reply(text="ok"),
    ]
    agent = agent_from("{model: standin-model, tools: [web-browser]}")
    settings = _settings(base_url, web=WebSettings(allow_private=True, max_bytes=64))
    async with open_runtime(agent, [], settings) as runtime:
        outcome = await runtime.run("read it")
    [call] = outcome.tool_calls
    assert not call.ok
    assert "64" in call.result
