"""deploy/monitoring: the dashboard queries only documented metrics (all of them, with their
labels), and the monitors select the pods and ports the project really renders and ships."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from agentkube.operator.naming import agent_labels
from tests.telemetry.documented import documented_metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
SCRAPE_LABELS = {"le", "namespace", "pod", "instance", "job"}  # added by Prometheus, or buckets


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def _metric_of(sample: str) -> str:
    documented = {m.name: m for m in documented_metrics()}
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in documented and documented[base].kind == "histogram":
            return base
    return sample


def test_every_dashboard_query_names_only_documented_metrics_and_labels() -> None:
    documented = {m.name: m for m in documented_metrics()}
    used: set[str] = set()
    for query in _queries():
        names = {_metric_of(n) for n in re.findall(r"\bagentkube_\w+", query)}
        unknown = names - documented.keys()
        assert not unknown, f"{query}: {unknown} are not in docs/observability.md"
        used |= names
        allowed = set().union(*(documented[n].labels for n in names)) | SCRAPE_LABELS
        for group in re.findall(r"by \(([^)]*)\)", query):
            labels = {g.strip() for g in group.split(",")}
            assert labels <= allowed, f"{query}: labels {labels - allowed} are not documented"
    assert used == documented.keys(), f"metrics without a panel: {documented.keys() - used}"


def test_the_kustomization_lists_every_file_and_the_dashboard_is_a_configmap() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    files = {p.name for p in MONITORING.iterdir()} - {"kustomization.yaml"}
    listed = set(kustomization["resources"])
    listed |= {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    assert listed == files


def test_the_agent_pod_monitor_selects_rendered_agent_pods_on_their_ports() -> None:
    (monitor,) = _documents(MONITORING / "podmonitor-agents.yaml")
    assert monitor["kind"] == "PodMonitor" and monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= agent_labels("any").items()
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert ports == {"http", "rag"}  # the runtime's and the RAG proxy's port names


def test_the_operator_and_gateway_monitors_select_the_shipped_objects() -> None:
    (monitor,) = _documents(MONITORING / "podmonitor-operator.yaml")
    (deployment,) = _documents(ROOT / "deploy" / "operator" / "deployment.yaml")
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    (service_monitor,) = _documents(MONITORING / "servicemonitor-gateway.yaml")
    service = next(
        d for d in _documents(ROOT / "deploy" / "gateway" / "deployment.yaml")
        if d["kind"] == "Service"
    )  # fmt: skip
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
