"""A subtask delegated over A2A stays in the task's trace: a planner and an executor, two
`agentkube agent serve` processes speaking A2A over real HTTP on loopback (``--peer``, no
Redis), each exporting OTLP/HTTP to a real receiver."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from tests.cli_process import finished_task
from tests.teams.replicas import Replica
from tests.telemetry.otlp_receiver import CLIENT, INTERNAL, SERVER, OtlpReceiver, ReceivedSpan
from tests.telemetry.services import otel_env

TEAM = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: planner}
spec: {model: offline, role: planner, tools: ['agent:coder'], memory: none}
---
apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: coder}
spec: {model: offline, role: executor, memory: none, systemPrompt: You write code.}
"""
NEEDLE = "needle"  # in the task and the answers: content, never in a span by default
CHAIN = [  # child first: each is the parent of the one after it
    ("coder", "invoke_agent coder"),
    ("coder", "a2a.execute"),
    ("planner", "a2a.send_message coder"),
    ("planner", "execute_tool agent_coder"),
    ("planner", "invoke_agent planner"),
]


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service}:{name} {len(found)} times"
    return found[0]


def test_a_subtask_sent_over_a2a_is_one_trace_with_its_planner(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    env = {**otel_env(receiver.url), "AGENTKUBE_NAMESPACE": f"a2a{time.time_ns()}"}
    coder = Replica(tmp_path, "--agent", "coder", manifest=team, env=env).launch()
    planner = Replica(tmp_path, "--agent", "planner", "--peer", f"coder={coder.url}",
                      manifest=team, env=env).launch()  # fmt: skip
    try:
        coder.wait_ready()
        planner.wait_ready()
        view = finished_task(planner.url, f"@coder: say {NEEDLE}", timeout=120)
        expected = set(CHAIN) | {("coder", "chat offline")}
        received = receiver.wait_for(lambda got: {(s.service, s.name) for s in got} >= expected)
    finally:
        planner.stop()
        coder.stop()
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert isinstance(result, dict)
    (call,) = result["tool_calls"]
    assert call["name"] == "agent:coder" and call["ok"], call  # it went over A2A, and came back

    assert len({s.trace_id for s in received}) == 1, {(s.service, s.name) for s in received}
    for (child_service, child), (parent_service, parent) in itertools.pairwise(CHAIN):
        c, p = _one(received, child_service, child), _one(received, parent_service, parent)
        assert c.parent_id == p.span_id, f"{child} is not a child of {parent}"
    root = _one(received, "planner", "invoke_agent planner")
    assert root.parent_id == ""  # the task came with no trace: the planner's run starts it
    chat = _one(received, "coder", "chat offline")
    assert chat.parent_id == _one(received, "coder", "invoke_agent coder").span_id

    send = _one(received, "planner", "a2a.send_message coder")
    execute = _one(received, "coder", "a2a.execute")
    assert (send.kind, execute.kind) == (CLIENT, SERVER)
    assert _one(received, "coder", "invoke_agent coder").kind == INTERNAL
    assert send.attributes["rpc.system"] == execute.attributes["rpc.system"] == "a2a"
    assert send.attributes["gen_ai.agent.name"] == "coder"
    assert send.attributes["server.address"] == coder.url
    # the A2A context the executor ran the message in, named on both sides of the hop
    context = execute.attributes["gen_ai.conversation.id"]
    assert context and send.attributes["gen_ai.conversation.id"] == context
    assert send.start_ns <= execute.start_ns and execute.end_ns <= send.end_ns
    leaked = [(s.name, k) for s in received for k, v in s.attributes.items() if NEEDLE in str(v)]
    assert leaked == []  # content is opt-in, off by default
