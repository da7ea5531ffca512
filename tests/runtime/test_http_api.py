"""The agent HTTP API on a real uvicorn server: tasks, SSE events, health, metrics, limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.memory.history import InMemoryHistory
from agentkube.runtime.agent import AgentRuntime
from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.server import create_app
from tests.runtime.helpers import agent_from, echo_prompts, runtime_for
from tests.standins.serving import raw_request, response_status, serve


async def slow_answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    await asyncio.sleep(0.3)
    return ModelResponse(parts=[TextPart("done thinking")])


def _factory(runtime: AgentRuntime):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def factory() -> AsyncIterator[AgentRuntime]:
        yield runtime

    return factory


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    runtime = runtime_for(agent_from("{model: m}"), FunctionModel(slow_answer))
    app = create_app(_factory(runtime), max_concurrent=1, max_queued=2)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def _wait_done(api: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = api.get(f"/v1/tasks/{task_id}").json()
        if view["status"] in ("succeeded", "failed"):
            return view
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


def test_submitted_task_runs_and_its_result_can_be_read(api: httpx.Client) -> None:
    response = api.post("/v1/tasks", json={"task": "think"})
    assert response.status_code == 202
    view = response.json()
    assert view["status"] in ("queued", "running")
    done = _wait_done(api, view["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["output"] == "done thinking"
    assert done["result"]["model"] == "scripted"


def test_events_stream_as_server_sent_events_until_the_task_ends(api: httpx.Client) -> None:
    task_id = api.post("/v1/tasks", json={"task": "think"}).json()["id"]
    kinds = []
    with api.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                kinds.append(json.loads(line.removeprefix("data: "))["kind"])
    assert kinds[0] == "run.started"
    assert "model.request" in kinds
    assert kinds[-1] == "run.finished"


def test_health_readiness_metrics_and_openapi_are_served(api: httpx.Client) -> None:
    assert api.get("/healthz").text == "ok"
    assert api.get("/readyz").status_code == 200
    task_id = api.post("/v1/tasks", json={"task": "think"}).json()["id"]
    _wait_done(api, task_id)
    metrics = api.get("/metrics").text
    assert 'agentkube_tasks_total{outcome="succeeded"} 1.0' in metrics
    assert "agentkube_task_duration_seconds_count 1.0" in metrics
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/tasks", "/v1/tasks/{task_id}", "/v1/tasks/{task_id}/events"} <= set(paths)
    assert api.get("/v1/agent").json()["name"] == "tester"


def test_bad_requests_get_clear_errors(api: httpx.Client) -> None:
    assert api.post("/v1/tasks", json={"task": ""}).status_code == 422
    assert api.post("/v1/tasks", json={"task": "x" * 100_001}).status_code == 422
    missing = api.get("/v1/tasks/nope")
    assert missing.status_code == 404
    assert "no task 'nope'" in missing.json()["detail"]


def test_a_full_queue_answers_429_and_keeps_earlier_tasks(api: httpx.Client) -> None:
    ids = [api.post("/v1/tasks", json={"task": f"t{i}"}).json()["id"] for i in range(3)]
    refused = api.post("/v1/tasks", json={"task": "one too many"})
    assert refused.status_code == 429
    assert "already queued" in refused.json()["detail"]
    assert all(_wait_done(api, i)["status"] == "succeeded" for i in ids)


def test_a_failing_run_is_reported_as_failed_with_its_reason() -> None:
    settings = RuntimeSettings(environ={}, base_url="http://127.0.0.1:9/v1")
    agent = agent_from("{model: m}")
    app = create_app(lambda: open_runtime(agent, [], settings))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as api:
        task_id = api.post("/v1/tasks", json={"task": "hi"}).json()["id"]
        view = _wait_done(api, task_id)
        assert view["status"] == "failed"
        assert "127.0.0.1:9/v1 is unreachable" in str(view["error"])
        assert 'agentkube_tasks_total{outcome="failed"} 1.0' in api.get("/metrics").text


def test_each_client_gets_its_own_conversation_unless_it_names_one() -> None:
    agent = agent_from("{model: m, memory: ephemeral}")
    runtime = runtime_for(agent, FunctionModel(echo_prompts), history=InMemoryHistory())
    with serve(create_app(_factory(runtime))) as url, httpx.Client(base_url=url) as api:
        first = api.post("/v1/tasks", json={"task": "I am Ada"}).json()
        assert first["conversation"] == first["id"]  # a new conversation, named in the answer
        _wait_done(api, first["id"])
        other = _wait_done(api, api.post("/v1/tasks", json={"task": "who?"}).json()["id"])
        assert other["result"]["output"] == "who?"  # another client: nothing shared
        again = api.post("/v1/tasks", json={"task": "who?", "conversation": first["id"]})
        done = _wait_done(api, again.json()["id"])
        assert done["result"]["output"] == "I am Ada | who?"
        bad = api.post("/v1/tasks", json={"task": "x", "conversation": "../etc"})
        assert bad.status_code == 422


def test_an_oversized_task_body_is_refused_while_it_streams(api: httpx.Client) -> None:
    sock = raw_request(
        str(api.base_url).rstrip("/"),
        b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n",
    )
    chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"x" * 1024 * 1024)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(64):  # 64 MiB offered; the agent API stops reading at 1 MiB
            sock.sendall(chunk)
    assert response_status(sock) == 413
    sock.close()
    assert api.get("/v1/tasks").json() == []  # nothing was queued


def test_undecodable_or_invalid_json_is_a_422_that_never_echoes_the_input(
    api: httpx.Client,
) -> None:
    headers = {"content-type": "application/json"}
    surrogate = api.post("/v1/tasks", content=b'{"task": "\\ud800"}', headers=headers)
    assert surrogate.status_code == 422, surrogate.text
    huge = "y" * 100_000
    invalid = api.post("/v1/tasks", json={"task": "x", "conversation": huge})
    assert invalid.status_code == 422
    detail = invalid.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("invalid request: ")
    assert len(invalid.content) < 1000, "the input was echoed back"
