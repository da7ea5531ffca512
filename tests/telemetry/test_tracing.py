"""Tracing in one process: off by default, pydantic-ai's GenAI spans exported to a real OTLP/HTTP
receiver when an endpoint is set, content only on opt-in, W3C context in and out."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic_ai.capabilities import Instrumentation

from agentkube.runtime.agent import instrumentation
from agentkube.runtime.offline import offline_model
from agentkube.runtime.tools import ToolEnvironment
from agentkube.sandbox.local import LocalSandbox
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import continued, extract, inject
from agentkube.telemetry.recording import SpanRecorder, span_tree
from agentkube.telemetry.settings import (
    ENV_CAPTURE_CONTENT,
    ENV_ENDPOINT,
    ENV_TRACES_SAMPLER,
    ENV_TRACES_SAMPLER_ARG,
    TelemetrySettings,
)
from agentkube.telemetry.tracing import resource_attributes, setup_tracing, tracer
from tests.runtime.helpers import agent_from, runtime_for
from tests.telemetry.otlp_receiver import CLIENT, OtlpReceiver, ReceivedSpan

# content: the task's code and its output carry this word; structure (roles, part types, tool
# names) is always in the spans, as the GenAI conventions have it
NEEDLE = "needle"
TASK = f"```python\nprint('{NEEDLE}-' + str(6 * 7))\n```"


def test_without_an_endpoint_tracing_is_off_and_the_sdk_is_never_imported() -> None:
    probe = (
        "import sys\n"
        "from agentkube.telemetry.tracing import setup_tracing, tracer\n"
        "from agentkube.runtime.agent import instrumentation\n"
        "t = setup_tracing('x', {})\n"
        "with tracer().start_as_current_span('s') as s: recording = s.is_recording()\n"
        "print(t.enabled, recording, bool(instrumentation()), 'opentelemetry.sdk' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "False", "False"]


def test_the_standard_variables_name_the_traces_url_and_the_content_opt_in() -> None:
    assert TelemetrySettings.from_env({ENV_ENDPOINT: "http://c:4318/"}).traces_url == (
        "http://c:4318/v1/traces"
    )
    off = TelemetrySettings.from_env({ENV_ENDPOINT: "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not off.exporting
    assert not TelemetrySettings.from_env({ENV_ENDPOINT: "http://c"}).capture_content
    assert TelemetrySettings.from_env({ENV_CAPTURE_CONTENT: "true"}).capture_content
    attributes = resource_attributes(
        "agent", {"OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=team-a,x=1"}
    )
    assert attributes == {"k8s.namespace.name": "team-a", "x": "1", "service.name": "agent"}


def test_trace_context_goes_out_and_comes_back_as_a_parent() -> None:
    recorder = SpanRecorder()
    setup_tracing("tests", {}, recorder=recorder)
    assert inject() == {}  # nothing recording: nothing sent
    with tracer().start_as_current_span("caller") as caller:
        carrier = inject({"content-type": "application/json"})
    assert carrier["traceparent"].split("-")[1] == f"{caller.get_span_context().trace_id:032x}"
    assert extract({}) is None and extract({"TraceParent": carrier["traceparent"]}) is not None
    with continued({"Traceparent": carrier["traceparent"]}), spans.span("callee"):
        pass
    (callee,) = [s for s in recorder.spans if s.name == "callee"]
    assert callee.parent is not None
    assert callee.parent.span_id == caller.get_span_context().span_id


def test_the_standard_sampler_variables_decide_what_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = SpanRecorder()
    setup_tracing("tests", {}, recorder=recorder)
    assert tracer() is tracer()  # one tracer per provider, not one per span
    with spans.span("kept") as kept:
        assert kept.is_recording()
    monkeypatch.setenv(ENV_TRACES_SAMPLER, "parentbased_traceidratio")
    monkeypatch.setenv(ENV_TRACES_SAMPLER_ARG, "0")
    setup_tracing("tests", {}, recorder=recorder)
    with spans.span("dropped") as dropped:
        assert not dropped.is_recording()
        carrier = inject()
    flags = int(carrier["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # the next hop is told the trace is not sampled
    assert [s.name for s in recorder.spans] == ["kept"]


def _by_name(received: list[ReceivedSpan], prefix: str) -> ReceivedSpan:
    matching = [s for s in received if s.name.startswith(prefix)]
    assert matching, f"no span {prefix!r} in {[s.name for s in received]}"
    return matching[0]


async def _traced_run(environ: dict[str, str], receiver: OtlpReceiver) -> list[ReceivedSpan]:
    setup_tracing("coder", environ)
    agent = agent_from("{model: offline, tools: [python-interpreter]}")
    sandbox = LocalSandbox()
    try:
        runtime = runtime_for(agent, offline_model(), tools=ToolEnvironment(sandbox=sandbox))
        outcome = await runtime.run(TASK)
    finally:
        await sandbox.aclose()
    assert f"{NEEDLE}-42" in outcome.output
    setup_tracing("tests", {})  # flushes the batch to the receiver
    return receiver.wait_for(lambda got: any(s.name.startswith("invoke_agent") for s in got))


@pytest.mark.sandbox
async def test_a_run_exports_invoke_agent_chat_and_execute_tool_spans(
    receiver: OtlpReceiver,
) -> None:
    received = await _traced_run({ENV_ENDPOINT: receiver.url}, receiver)
    agent = _by_name(received, "invoke_agent")
    chat = _by_name(received, "chat")
    tool = _by_name(received, "execute_tool python-interpreter")
    sandbox = _by_name(received, "sandbox.execute")
    assert {s.trace_id for s in received} == {agent.trace_id}
    assert agent.parent_id == "" and agent.service == "coder"
    assert chat.parent_id == agent.span_id and tool.parent_id == agent.span_id
    assert sandbox.parent_id == tool.span_id and sandbox.kind == CLIENT
    assert agent.attributes["gen_ai.agent.name"] == "tester"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert tool.attributes["gen_ai.tool.name"] == "python-interpreter"
    assert sandbox.attributes[spans.SANDBOX_EXIT_CODE] == 0
    assert "gen_ai.conversation.id" in agent.attributes
    leaked = [(s.name, k) for s in received for k, v in s.attributes.items() if NEEDLE in str(v)]
    assert leaked == []  # content is opt-in


@pytest.mark.sandbox
async def test_content_is_in_the_spans_only_when_asked_for(receiver: OtlpReceiver) -> None:
    environ = {ENV_ENDPOINT: receiver.url, ENV_CAPTURE_CONTENT: "true"}
    received = await _traced_run(environ, receiver)
    chat = _by_name(received, "chat")
    assert NEEDLE in str(chat.attributes["gen_ai.input.messages"])
    tool = _by_name(received, "execute_tool")
    assert f"{NEEDLE}-42" in str(tool.attributes["gen_ai.tool.call.result"])


def test_pydantic_ai_instrumentation_follows_the_installed_provider() -> None:
    assert instrumentation() == []
    setup_tracing("tests", {}, recorder=SpanRecorder())
    (capability,) = instrumentation()
    assert isinstance(capability, Instrumentation)
    assert not capability.settings.include_content


@pytest.mark.sandbox
async def test_the_recorded_spans_form_one_tree() -> None:
    recorder = SpanRecorder()
    setup_tracing("coder", {}, recorder=recorder)
    agent = agent_from("{model: offline, tools: [python-interpreter]}")
    sandbox = LocalSandbox()
    try:
        runtime = runtime_for(agent, offline_model(), tools=ToolEnvironment(sandbox=sandbox))
        await runtime.run(TASK)
    finally:
        await sandbox.aclose()
    (root,) = span_tree(recorder.spans)
    assert root.name.startswith("invoke_agent")
    names = [c.name for c in root.children]
    assert names[0].startswith("chat") and "execute_tool python-interpreter" in names
    tool = next(c for c in root.children if c.name == "execute_tool python-interpreter")
    assert [c.name for c in tool.children] == ["sandbox.execute"]
