"""``telemetry:`` in the operator config: the collector's OTEL_* variables in every container of an
Agent's pod, egress to the collector, ingress from the scraper; nothing without it (pure)."""

from __future__ import annotations

from typing import Any

from agentkube.operator.config import OperatorConfig, parse_config
from agentkube.operator.networking import scrape_rules
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

COLLECTOR = "http://otel-collector.observability:4318"
CONFIG = parse_config(
    {
        "telemetry": {
            "endpoint": COLLECTOR,
            "peer": {"namespaceLabels": {"kubernetes.io/metadata.name": "observability"},
                     "podLabels": {"app": "collector"}, "ports": [4318]},
            "scraper": {"namespaceLabels": {"kubernetes.io/metadata.name": "monitoring"},
                        "podLabels": {"app": "prometheus"}, "ports": [9090]},
        }
    }
)  # fmt: skip


def children(config: OperatorConfig, **spec: Any) -> list[dict[str, Any]]:
    resolved = endpoint_for_model("llama-3-70b", "team-a", {"llama-3-70b": model()}, config)
    return render_agent(agent(**spec), "team-a", resolved, config)


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_every_container_of_the_pod_exports_to_the_collector_under_its_own_name() -> None:
    rendered = children(CONFIG, rag={"collection": "handbook"})
    pod = of_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    (runtime,) = pod["containers"]
    (sidecar,) = pod["initContainers"]
    name = agent().metadata.name
    for container, service in ((runtime, name), (sidecar, f"{name}-rag-proxy")):
        env = env_of(container)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == COLLECTOR
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == service
        attributes = "k8s.namespace.name=$(OTEL_K8S_NAMESPACE),k8s.pod.name=$(OTEL_K8S_POD_NAME)"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == attributes
        names = [e["name"] for e in container["env"]]  # defined before they are referenced
        assert names.index("OTEL_K8S_NAMESPACE") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" not in env  # opt-in


def test_the_policy_lets_pods_reach_the_collector_and_the_scraper_reach_them() -> None:
    policy = of_kind(children(CONFIG, rag={"collection": "handbook"}), "NetworkPolicy")["spec"]
    assert any(
        r.get("to", [{}])[0].get("podSelector") == {"matchLabels": {"app": "collector"}}
        and r["ports"] == [{"protocol": "TCP", "port": 4318}]
        for r in policy["egress"]
    )
    scrape = policy["ingress"][-1]
    assert scrape["from"][0]["podSelector"] == {"matchLabels": {"app": "prometheus"}}
    ports = [p["port"] for p in scrape["ports"]]
    assert ports == [CONFIG.agent_port, CONFIG.rag_sidecar.port]


def test_content_capture_is_passed_only_when_the_config_opts_in() -> None:
    config = parse_config({"telemetry": {"endpoint": COLLECTOR, "captureContent": True}})
    pod = of_kind(children(config), "Deployment")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] == (
        "true"
    )


def test_without_telemetry_the_pod_and_policy_are_unchanged() -> None:
    rendered = children(OperatorConfig())
    pod = of_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    assert not any(n.startswith("OTEL_") for n in env_of(pod["containers"][0]))
    assert scrape_rules(agent(), OperatorConfig()) == []
    assert len(of_kind(rendered, "NetworkPolicy")["spec"]["ingress"]) == 1
