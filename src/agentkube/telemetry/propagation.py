"""W3C trace context (``traceparent``, ``tracestate``) across every hop agentkube makes.

The same two functions serve HTTP headers (agent → gateway, agent → RAG proxy → model), A2A
message metadata (planner → executor) and queued task records (the Redis stream entry's record):
each carrier is a ``str → str`` mapping. The W3C propagator is used directly rather than
``OTEL_PROPAGATORS``' choice, so every agentkube hop speaks the same format. Injecting with no
span recording (tracing off, no incoming context) writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
FIELDS = (TRACEPARENT, TRACESTATE)

_W3C = TraceContextTextMapPropagator()


def inject(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The current trace context added to ``carrier`` (a copy); nothing when there is none."""
    out = dict(carrier or {})
    _W3C.inject(out)
    return out


def trace_fields(carrier: Mapping[str, object] | None) -> dict[str, str]:
    """The trace-context fields of ``carrier`` (header names are case-insensitive)."""
    if not carrier:
        return {}
    found: dict[str, str] = {}
    for key, value in carrier.items():
        name = key.lower()
        if name in FIELDS and isinstance(value, str):
            found[name] = value
    return found


def extract(carrier: Mapping[str, object] | None) -> Context | None:
    """The context ``carrier`` continues, or None when it carries none."""
    fields = trace_fields(carrier)
    if TRACEPARENT not in fields:
        return None
    return _W3C.extract(fields)


@contextmanager
def continued(carrier: Mapping[str, object] | None) -> Iterator[None]:
    """Within the block, spans are children of the context ``carrier`` holds (if any)."""
    extracted = extract(carrier)
    if extracted is None:
        yield
        return
    token = otel_context.attach(extracted)
    try:
        yield
    finally:
        otel_context.detach(token)
