"""One sampling decision per task, drawn at its root, so that a task not recorded costs nothing.

pydantic-ai's instrumentation does most of its work (a second preparation of every model
request for the span's attributes, the price lookup, serialising the messages) whether or not
its spans are recorded. So the runtime decides before a run whether the task is recorded
(:meth:`~agentkube.telemetry.tracing.Tracing.task`) and gives pydantic-ai its instrumentation
for that run only when it is.

A task that continues a trace (an incoming ``traceparent``, a parent span in this process)
follows its parent's sampled flag. A task that starts one draws once from the provider's
sampler (``OTEL_TRACES_SAMPLER``). Drawn out, it still runs inside a trace context, a
non-recording span with the sampled flag off, so every hop it makes tells the next service
the trace is not sampled. Drawn in, pydantic-ai's ``invoke_agent`` span becomes its root, and
:class:`TaskRootSampler` gives that root the decision already drawn rather than drawing again.

This module imports the SDK; only a process with a provider imports it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

_drawn: ContextVar[SamplingResult | None] = ContextVar("agentkube_task_drawn", default=None)


class TaskRootSampler(Sampler):
    """``inner``, except for the root span of a task drawn in: it takes the drawn decision."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(  # noqa: PLR0917 (the SDK's Sampler signature)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        drawn = _drawn.get()
        parent = trace.get_current_span(parent_context).get_span_context()
        if drawn is not None and not parent.is_valid:
            return SamplingResult(drawn.decision, attributes, drawn.trace_state)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"TaskRoot{{{self.inner.get_description()}}}"


@contextmanager
def drawn_task(provider: TracerProvider, name: str) -> Iterator[bool]:
    """A task with no trace to continue: draw once; yields whether it is recorded."""
    ids = provider.id_generator
    trace_id = ids.generate_trace_id()
    result = provider.sampler.should_sample(None, trace_id, name)
    if result.decision is Decision.RECORD_AND_SAMPLE:  # what the SDK calls sampled
        token = _drawn.set(result)
        try:
            yield True
        finally:
            _drawn.reset(token)
        return
    context = SpanContext(
        trace_id,
        ids.generate_span_id(),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
        trace_state=result.trace_state,
    )
    with trace.use_span(NonRecordingSpan(context)):
        yield False
