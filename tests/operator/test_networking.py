from __future__ import annotations

from typing import Any

from agentkube.operator.config import OperatorConfig
from agentkube.operator.networking import render_network_policy
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

CONFIG = OperatorConfig()


def policy(a: Any, resolved: Any = None) -> dict[str, Any]:
    return render_network_policy(a, "ns", resolved, CONFIG, {"name": "x"})["spec"]


def allows_web(spec: dict[str, Any]) -> bool:
    return any("ipBlock" in peer for rule in spec["egress"] for peer in rule["to"])


def test_policy_denies_by_default_in_both_directions() -> None:
    spec = policy(agent(tools=[]))
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"]["ai.openvn/agent"] == "research-agent"


def test_dns_is_always_allowed() -> None:
    rule = policy(agent(tools=[], memory="none"))["egress"][0]
    assert rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_only_agents_with_the_web_browser_reach_the_web() -> None:
    assert allows_web(policy(agent(tools=["web-browser"])))
    assert not allows_web(policy(agent(tools=["python-interpreter"])))


def test_web_access_excludes_private_ranges() -> None:
    spec = policy(agent(tools=["web-browser"]))
    (block,) = [p["ipBlock"] for r in spec["egress"] for p in r["to"] if "ipBlock" in p]
    assert block["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in block["except"]


def test_a_served_model_is_reached_on_its_serving_pods_only() -> None:
    resolved = endpoint_for_model("llama-3-70b", "ns", {"llama-3-70b": model()}, CONFIG)
    rules = policy(agent(tools=[], memory="none"), resolved)["egress"]
    assert rules[1] == {
        "to": [
            {
                "podSelector": {
                    "matchLabels": {
                        "ai.openvn/model": "llama-3-70b",
                        "app.kubernetes.io/component": "model-server",
                    }
                }
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8000}],
    }


def test_memory_servers_are_reached_only_when_configured_and_chroma_only_by_its_users() -> None:
    def ports(spec: dict[str, Any]) -> set[int]:
        return {p["port"] for r in spec["egress"] for p in r["ports"]}

    assert ports(policy(agent(tools=[], memory="persistent"))) == {53}  # no memory configured
    shared = OperatorConfig.model_validate({"memory": {}})

    def with_memory(a: Any) -> set[int]:
        return ports(render_network_policy(a, "ns", None, shared, {"name": "x"})["spec"])

    assert with_memory(agent(tools=[], memory="persistent")) == {53, 6379, 8000}
    assert with_memory(agent(tools=[], memory="none")) == {53, 6379}  # the task hand-off
    assert with_memory(agent(tools=[], memory="ephemeral")) == {53, 6379}


def test_python_interpreter_reaches_the_sandbox_gateway() -> None:
    def components(spec: dict[str, Any]) -> set[str]:
        return {
            p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "")
            for r in spec["egress"]
            for p in r["to"]
            if "podSelector" in p
        }

    assert "sandbox-gateway" in components(policy(agent(tools=["python-interpreter"])))
    assert "sandbox-gateway" not in components(policy(agent(tools=["web-browser"])))


def test_agent_tools_reach_those_agents_and_agents_accept_agents() -> None:
    spec = policy(agent(tools=["agent:coder", "agent:critic"], role="planner"))
    (rule,) = [r for r in spec["egress"] if r["ports"] == [{"protocol": "TCP", "port": 8080}]]
    assert [p["podSelector"]["matchLabels"]["ai.openvn/agent"] for p in rule["to"]] == [
        "coder",
        "critic",
    ]
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
