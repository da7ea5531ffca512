"""The span names and attributes agentkube records itself (pydantic-ai records the agent
loop's). GenAI semantic-convention names where one exists, ``agentkube.*`` otherwise."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentkube.telemetry.tracing import tracer

# OpenTelemetry GenAI semantic conventions
OPERATION = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
DATA_SOURCE = "gen_ai.data_source.id"
# messaging (the task queue) and RPC (A2A)
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
DELIVERY_COUNT = "messaging.redis.delivery_count"
RPC_SYSTEM = "rpc.system"
SERVER_ADDRESS = "server.address"
# agentkube's own
SANDBOX_BACKEND = "agentkube.sandbox.backend"
SANDBOX_LANGUAGE = "agentkube.sandbox.language"
SANDBOX_EXIT_CODE = "agentkube.sandbox.exit_code"
SANDBOX_KILLED = "agentkube.sandbox.killed_reason"
CALLER = "agentkube.caller"
CHUNKS = "agentkube.rag.chunks"
RAG_OUTCOME = "agentkube.rag.outcome"

__all__ = ["Span", "SpanKind", "span"]


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time_ns: int | None = None,
) -> Iterator[Span]:
    """A span of agentkube's tracer, current within the block; an exception ends it in error
    (and goes on)."""
    with tracer().start_as_current_span(
        name, kind=kind, attributes=attributes, start_time=start_time_ns
    ) as current:
        yield current


def mark_failed(description: str) -> None:
    """Set the current span's status to error with ``description``."""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, description[:300]))


def record(
    name: str,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """A finished child span of the current one, from times measured elsewhere (the sandbox
    runner's own duration)."""
    tracer().start_span(name, attributes=attributes, start_time=start_ns).end(end_time=end_ns)
