"""``agentkube run --trace``: the run's spans as a rich tree, with their timings.

The spans come from the in-process recorder (:mod:`agentkube.telemetry.recording`), so no
collector is needed; with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set the same spans are exported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from agentkube.telemetry.recording import SpanNode

# what a span's line shows besides its name and duration, when the span has it
_SHOWN = {
    "gen_ai.usage.input_tokens": "in",
    "gen_ai.usage.output_tokens": "out",
    "agentkube.sandbox.backend": "backend",
    "agentkube.sandbox.exit_code": "exit",
    "agentkube.rag.chunks": "chunks",
}


def _label(node: SpanNode) -> str:
    extras = [f"{short}={node.attributes[key]}" for key, short in _SHOWN.items()
              if key in node.attributes]  # fmt: skip
    mark = "" if node.ok else " [red]✗[/]"
    details = f" [dim]{escape(' '.join(extras))}[/]" if extras else ""
    return f"{escape(node.name)} [cyan]{node.duration_ms:.0f} ms[/]{mark}{details}"


def _add(tree: Tree, node: SpanNode) -> None:
    branch = tree.add(_label(node))
    for child in node.children:
        _add(branch, child)


def trace_tree(roots: Sequence[SpanNode]) -> Tree:
    tree = Tree("[bold]trace[/]", guide_style="dim")
    for root in roots:
        _add(tree, root)
    return tree


def flatten(roots: Sequence[SpanNode]) -> list[dict[str, Any]]:
    """The tree as plain data (depth-first), for tests and ``--json``."""
    out: list[dict[str, Any]] = []

    def walk(node: SpanNode, depth: int) -> None:
        out.append({"name": node.name, "depth": depth, "duration_ms": node.duration_ms})
        for child in node.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return out
