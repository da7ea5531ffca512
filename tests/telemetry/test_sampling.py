"""One sampling decision per task: a task the sampler leaves out runs without pydantic-ai's
instrumentation and exports nothing, yet still propagates its trace context (``sampled=0``); a
task it keeps exports the full tree; a task continuing a caller's trace follows the caller."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from opentelemetry import baggage

from agentkube.runtime.offline import offline_model
from agentkube.runtime.tools import ToolEnvironment
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult
from agentkube.telemetry.propagation import TRACEPARENT, continued, inject
from agentkube.telemetry.settings import ENV_ENDPOINT, ENV_TRACES_SAMPLER, ENV_TRACES_SAMPLER_ARG
from agentkube.telemetry.tracing import setup_tracing
from tests.runtime.helpers import agent_from, runtime_for
from tests.telemetry.otlp_receiver import OtlpReceiver, ReceivedSpan

TASK = "```python\nprint(1)\n```"
# what one recorded task of the offline model with one sandboxed run exports
FULL_TREE = Counter(
    {
        "invoke_agent tester": 1,
        "chat offline": 2,
        "execute_tool python-interpreter": 1,
        "sandbox.execute": 1,
    }
)


@dataclass(frozen=True)
class Seen:
    """The trace context a sandbox request was made in, as the next hop would be told it."""

    trace_id: str
    sampled: bool
    instrumented: bool  # pydantic-ai's instrumentation wrapped the run (its baggage is set)


@dataclass
class WitnessSandbox:
    """A Sandbox that answers at once and notes the trace context of every request."""

    seen: list[Seen] = field(default_factory=list)

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        _, trace_id, _, flags = inject()[TRACEPARENT].split("-")
        instrumented = "gen_ai.agent.name" in baggage.get_all()
        self.seen.append(Seen(trace_id, bool(int(flags, 16) & 1), instrumented))
        return ExecutionResult(exit_code=0, stdout="1\n", duration_ms=1.0)

    async def aclose(self) -> None:
        return None


def _ratio(receiver: OtlpReceiver, ratio: float, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Export to ``receiver``, sampling ``ratio`` of new traces (the SDK reads its sampler from
    the process's environment)."""
    monkeypatch.setenv(ENV_TRACES_SAMPLER, "parentbased_traceidratio")
    monkeypatch.setenv(ENV_TRACES_SAMPLER_ARG, str(ratio))
    return {ENV_ENDPOINT: receiver.url}


async def _run_tasks(
    environ: dict[str, str], tasks: int, traceparent: str | None = None
) -> list[Seen]:
    """Run ``tasks`` tasks one after another, continuing ``traceparent`` if given."""
    setup_tracing("coder", environ)
    sandbox = WitnessSandbox()
    agent = agent_from("{model: offline, tools: [python-interpreter]}")
    runtime = runtime_for(agent, offline_model(), tools=ToolEnvironment(sandbox=sandbox))
    carrier = {TRACEPARENT: traceparent} if traceparent else None
    for _ in range(tasks):
        with continued(carrier):
            await runtime.run(TASK)
    setup_tracing("tests", {})  # flushes the batch to the receiver
    return sandbox.seen


def _traces(received: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in received:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


async def test_with_ratio_sampling_a_task_is_recorded_whole_or_not_at_all(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = await _run_tasks(_ratio(receiver, 0.5, monkeypatch), tasks=16)
    traces = _traces(receiver.spans)
    kept = {s.trace_id for s in seen if s.sampled}
    assert 0 < len(kept) < 16  # a sampler at work (both ends: 2 in 65 536)
    assert set(traces) == kept and len({s.trace_id for s in seen}) == 16
    for trace in traces.values():
        assert Counter(s.name for s in trace) == FULL_TREE
        (root,) = [s for s in trace if s.parent_id == ""]
        assert root.name == "invoke_agent tester"
    # pydantic-ai's instrumentation ran for the recorded tasks only; the others still sent a
    # valid trace context on, with the sampled flag off
    assert all(s.instrumented == s.sampled for s in seen)
    assert all(int(s.trace_id, 16) != 0 for s in seen)


async def test_a_task_left_out_exports_nothing(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = await _run_tasks(_ratio(receiver, 0.0, monkeypatch), tasks=3)
    assert receiver.spans == [] and receiver.requests == 0
    assert [(s.sampled, s.instrumented) for s in seen] == [(False, False)] * 3


async def test_a_task_follows_the_sampled_flag_of_the_trace_it_continues(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller_trace, caller_span = "ab" * 16, "cd" * 8
    caller = f"00-{caller_trace}-{caller_span}"
    # no root would be drawn in, but the caller's trace is sampled: the task is recorded whole
    seen = await _run_tasks(_ratio(receiver, 0.0, monkeypatch), 1, f"{caller}-01")
    assert seen == [Seen(caller_trace, sampled=True, instrumented=True)]
    assert Counter(s.name for s in receiver.spans) == FULL_TREE
    (agent,) = receiver.named("invoke_agent")
    assert agent.trace_id == caller_trace and agent.parent_id == caller_span
    # every root would be drawn in, but the caller's trace is not sampled: nothing is
    before = len(receiver.spans)
    seen = await _run_tasks(_ratio(receiver, 1.0, monkeypatch), 1, f"{caller}-00")
    assert seen == [Seen(caller_trace, sampled=False, instrumented=False)]
    assert len(receiver.spans) == before
