"""Each model request is timed on its own (runtime.timing): a streamed answer to its end, a
failed request too, and never the tool calls between requests — against the stand-in model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.errors import ModelRequestFailed
from tests.runtime.helpers import agent_from
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve

HOLD_S = 0.4  # the stand-in holds a streamed answer this long after its first piece
TOOL_S = 0.8  # the tool call between two requests sleeps this long


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


def _settings(base_url: str) -> RuntimeSettings:
    return RuntimeSettings(environ={}, base_url=base_url)


async def test_a_streamed_answer_is_timed_until_its_last_piece(
    model_server: tuple[ScriptedModel, str],
) -> None:
    script, base_url = model_server
    script.replies = [Reply(text="a slow answer, streamed")]
    script.stream_gate = gate = threading.Event()

    def hold() -> None:  # from the request's arrival (the timing began before it was sent)
        while not script.requests:
            time.sleep(0.01)
        time.sleep(HOLD_S)
        gate.set()

    release = threading.Thread(target=hold, daemon=True)
    seconds: list[float] = []
    async with open_runtime(agent_from("{model: standin-model}"), [], _settings(base_url)) as rt:
        rt.timing.observers.append(seconds.append)
        assert rt.stream_text  # the OpenAI path streams the answer
        release.start()
        outcome = await rt.run("answer slowly")
    release.join()
    assert outcome.output == "a slow answer, streamed"
    [request] = seconds
    assert HOLD_S <= request < outcome.duration_ms / 1000


@pytest.mark.sandbox
async def test_tool_calls_between_requests_are_not_model_time(
    model_server: tuple[ScriptedModel, str],
) -> None:
    script, base_url = model_server
    code = f"import time\ntime.sleep({TOOL_S})\nprint('slept')"
    script.replies = [
        Reply(tool_calls=[ToolCall("python-interpreter", {"code": code})]),
        Reply(text="slept well"),
    ]
    agent = agent_from("{model: standin-model, tools: [python-interpreter]}")
    seconds: list[float] = []
    async with open_runtime(agent, [], _settings(base_url)) as rt:
        rt.timing.observers.append(seconds.append)
        outcome = await rt.run("sleep, then say so")
    assert outcome.tool_calls[0].ok and outcome.tool_calls[0].duration_ms >= TOOL_S * 1000
    assert len(seconds) == outcome.model_requests == 2
    assert sum(seconds) < outcome.duration_ms / 1000 - TOOL_S


async def test_a_failed_request_is_timed_too(model_server: tuple[ScriptedModel, str]) -> None:
    script, base_url = model_server
    script.replies = [Reply(status=400, error={"error": {"message": "no such model"}})]
    seconds: list[float] = []
    async with open_runtime(agent_from("{model: standin-model}"), [], _settings(base_url)) as rt:
        rt.timing.observers.append(seconds.append)
        with pytest.raises(ModelRequestFailed, match="HTTP 400"):
            await rt.run("anything")
    assert len(script.requests) == 1 and len(seconds) == 1
