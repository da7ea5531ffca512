"""The metrics docs/observability.md documents, read from its table (one source for the tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
_ROW = re.compile(r"^\| `(agentkube_\w+)` \| (counter|gauge|histogram) \| ([^|]*) \| ([\w-]+) \|")


@dataclass(frozen=True)
class Documented:
    name: str
    kind: str
    labels: frozenset[str]
    component: str


def documented_metrics() -> list[Documented]:
    found = []
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, labels, component = match.groups()
            names = frozenset(re.findall(r"`(\w+)`", labels))
            found.append(Documented(name, kind, names, component))
    return found


def exposed(page: str) -> dict[str, set[frozenset[str]]]:
    """Sample name → the label sets it appears with (``le`` left out), from a /metrics page."""
    samples: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = frozenset(k for k in sample.labels if k != "le")
            samples.setdefault(sample.name, set()).add(labels)
    return samples


def missing(page: str, component: str) -> list[str]:
    """What the page lacks of the component's documented metrics (name, or labels)."""
    samples = exposed(page)
    problems = []
    for metric in documented_metrics():
        if metric.component != component:
            continue
        sample = f"{metric.name}_count" if metric.kind == "histogram" else metric.name
        if sample not in samples:
            problems.append(f"{metric.name}: not on /metrics")
        elif samples[sample] != {metric.labels}:
            problems.append(f"{metric.name}: labels {samples[sample]} != {set(metric.labels)}")
    return problems
