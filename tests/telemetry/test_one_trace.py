"""One task, one trace: a planner (offline model, tasks through its Redis queue) hands a subtask
through the executor's Redis queue to an executor whose model sits behind the RAG proxy and whose
code runs through the sandbox gateway — five processes, each exporting OTLP/HTTP to a real
receiver on loopback. The A2A hop has its own test, test_a2a_trace.py."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from agentkube.memory.settings import MemorySettings
from tests.cli_process import finished_task
from tests.memory.servers import RedisServer
from tests.sidecar.conftest import COLLECTION
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall
from tests.teams.replicas import Replica
from tests.telemetry.otlp_receiver import (
    CONSUMER,
    PRODUCER,
    SERVER,
    OtlpReceiver,
    ReceivedSpan,
)
from tests.telemetry.services import otel_env, service

ROOT = Path(__file__).resolve().parents[2]
TEAM = ROOT / "examples" / "team.yaml"
NEEDLE = "needle"  # in the task, the code and the answer: content, never in a span by default
EXPECTED = {
    ("planner", "queue.publish planner"),
    ("planner", "queue.process planner"),
    ("planner", "invoke_agent planner"),
    ("planner", "execute_tool agent_coder"),
    ("planner", "queue.publish coder"),
    ("coder", "queue.process coder"),
    ("coder", "invoke_agent coder"),
    ("coder", "chat standin-model"),
    ("coder", "execute_tool python-interpreter"),
    ("coder", "sandbox.execute"),
    ("agentkube-rag-proxy", "rag.proxy"),
    ("agentkube-rag-proxy", f"retrieval {COLLECTION}"),
    ("agentkube-sandbox-gateway", "sandbox.execute"),
    ("agentkube-sandbox-gateway", "sandbox.run"),
}

pytestmark = pytest.mark.sandbox


def _seen(spans: list[ReceivedSpan]) -> set[tuple[str, str]]:
    return {(s.service, s.name) for s in spans}


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert found, f"no {service}:{name}"
    return found[0]


def test_one_task_is_one_trace_from_the_planner_to_the_sandbox(
    tmp_path: Path,
    receiver: OtlpReceiver,
    redis_server: RedisServer,
    embedded_knowledge: MemorySettings,
    model: tuple[ScriptedModel, str],
) -> None:
    script, upstream = model
    script.replies = [
        Reply(tool_calls=[ToolCall("python-interpreter", {"code": f"print('{NEEDLE}', 6 * 7)"})]),
        Reply(text=f"{NEEDLE}: 6 * 7 = 42"),
    ]
    (tmp_path / "tokens").write_text("coder-token coder\n")
    (tmp_path / "token").write_text("coder-token")
    env = {**otel_env(receiver.url), "AGENTKUBE_NAMESPACE": f"obs{time.time_ns()}"}
    gateway_args = ["sandbox", "gateway", "--backend", "local", "--auth", "static",
                    "--token-file", str(tmp_path / "tokens")]  # fmt: skip
    sidecar_args = ["sidecar", "rag", "--upstream", upstream, "--collection", COLLECTION,
                    "--data-dir", str(embedded_knowledge.data_dir)]  # fmt: skip
    with (
        service(gateway_args, env, tmp_path / "gateway.log") as gateway,
        service(sidecar_args, env, tmp_path / "sidecar.log", health="/readyz") as sidecar,
    ):
        coder_env = {**env, "AGENTKUBE_SANDBOX_URL": gateway,
                     "AGENTKUBE_SANDBOX_TOKEN_FILE": str(tmp_path / "token")}  # fmt: skip
        # Both on the shared queue, as in a cluster: the planner hands the subtask over Redis.
        coder = Replica(tmp_path, "--agent", "coder", "--model", "standin-model", "--base-url",
                        f"{sidecar}/v1", "--redis", redis_server.url, manifest=TEAM,
                        env=coder_env).launch()  # fmt: skip
        planner = Replica(tmp_path, "--agent", "planner", "--model", "offline", "--peer",
                          f"coder={coder.url}", "--redis", redis_server.url, manifest=TEAM,
                          env=env).launch()  # fmt: skip
        try:
            coder.wait_ready()
            planner.wait_ready()
            view = finished_task(planner.url, f"@coder: what is 6 * 7, {NEEDLE}?", timeout=180)
            assert view["status"] == "succeeded", view
            received = receiver.wait_for(lambda got: _seen(got) >= EXPECTED)
        finally:
            planner.stop()
            coder.stop()
    _assert_one_linked_trace(received)
    _assert_attributes(received, script)


def _assert_one_linked_trace(received: list[ReceivedSpan]) -> None:
    assert len({s.trace_id for s in received}) == 1, _seen(received)
    chain = [  # child first: each is the parent of the one before
        ("agentkube-sandbox-gateway", "sandbox.run"),
        ("agentkube-sandbox-gateway", "sandbox.execute"),
        ("coder", "sandbox.execute"),
        ("coder", "execute_tool python-interpreter"),
        ("coder", "invoke_agent coder"),
        ("coder", "queue.process coder"),
        ("planner", "queue.publish coder"),
        ("planner", "execute_tool agent_coder"),
        ("planner", "invoke_agent planner"),
        ("planner", "queue.process planner"),
        ("planner", "queue.publish planner"),
    ]
    for (child_service, child), (parent_service, parent) in itertools.pairwise(chain):
        c, p = _one(received, child_service, child), _one(received, parent_service, parent)
        assert c.parent_id == p.span_id, f"{child} is not a child of {parent}"
    assert _one(received, "planner", "queue.publish planner").parent_id == ""
    chat = _one(received, "coder", "chat standin-model")
    proxy = _one(received, "agentkube-rag-proxy", "rag.proxy")
    retrieval = _one(received, "agentkube-rag-proxy", f"retrieval {COLLECTION}")
    assert proxy.parent_id == chat.span_id and retrieval.parent_id == proxy.span_id


def _assert_attributes(received: list[ReceivedSpan], script: ScriptedModel) -> None:
    kinds = {(s.service, s.name): s.kind for s in received}
    assert kinds[("planner", "queue.publish planner")] == PRODUCER
    assert kinds[("planner", "queue.process planner")] == CONSUMER
    assert kinds[("planner", "queue.publish coder")] == PRODUCER
    assert kinds[("coder", "queue.process coder")] == CONSUMER
    assert kinds[("agentkube-sandbox-gateway", "sandbox.execute")] == SERVER
    planner = _one(received, "planner", "invoke_agent planner")
    assert planner.attributes["gen_ai.agent.name"] == "planner"
    assert planner.attributes["gen_ai.operation.name"] == "invoke_agent"
    chat = _one(received, "coder", "chat standin-model")
    assert chat.attributes["gen_ai.request.model"] == "standin-model"
    assert "gen_ai.usage.input_tokens" in chat.attributes
    tool = _one(received, "planner", "execute_tool agent_coder")
    assert tool.attributes["gen_ai.tool.name"] == "agent_coder"
    assert _one(received, "coder", "invoke_agent coder").attributes["gen_ai.conversation.id"]
    retrieval = _one(received, "agentkube-rag-proxy", f"retrieval {COLLECTION}")
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["gen_ai.data_source.id"] == COLLECTION
    gateway = _one(received, "agentkube-sandbox-gateway", "sandbox.execute")
    assert gateway.attributes["agentkube.sandbox.backend"] == "local"
    assert gateway.attributes["agentkube.sandbox.exit_code"] == 0
    assert gateway.attributes["agentkube.caller"] == "coder"
    # the model behind the proxy got the proxy span's context
    proxy = _one(received, "agentkube-rag-proxy", "rag.proxy")
    traceparent = script.headers[0]["traceparent"]
    assert traceparent.split("-")[1:3] == [proxy.trace_id, proxy.span_id]
    leaked = [(s.name, k) for s in received for k, v in s.attributes.items() if NEEDLE in str(v)]
    assert leaked == []  # content is opt-in, off by default
