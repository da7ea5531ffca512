"""Spans kept in process, and the tree they form: what ``agentkube run --trace`` prints.

:class:`SpanRecorder` is a span processor holding the spans that ended (bounded), so a run's
trace can be shown with no collector. :func:`span_tree` links them by parent into
:class:`SpanNode` s, oldest first; a span whose parent was not recorded (it ran in another
process) is a root.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

MAX_SPANS = 10_000


class SpanRecorder(SpanProcessor):
    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self._spans: list[ReadableSpan] = []
        self._max = max_spans
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if len(self._spans) < self._max:
                self._spans.append(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)


@dataclass
class SpanNode:
    name: str
    start_ns: int
    duration_ms: float
    attributes: dict[str, Any]
    ok: bool
    children: list[SpanNode] = field(default_factory=list)


def span_tree(spans: Sequence[ReadableSpan]) -> list[SpanNode]:
    """The spans as trees, children in the order they started."""
    nodes: dict[int, SpanNode] = {}
    parents: dict[int, int | None] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        if span.context is None:
            continue
        start, end = span.start_time or 0, span.end_time or span.start_time or 0
        nodes[span.context.span_id] = SpanNode(
            name=span.name,
            start_ns=start,
            duration_ms=(end - start) / 1e6,
            attributes=dict(span.attributes or {}),
            ok=span.status.status_code != StatusCode.ERROR,
        )
        parents[span.context.span_id] = span.parent.span_id if span.parent else None
    roots: list[SpanNode] = []
    for span_id, node in nodes.items():
        parent = parents[span_id]
        if parent is not None and parent in nodes:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    return roots
