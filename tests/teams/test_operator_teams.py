"""In a cluster: a planner's pod reaches exactly the agents it names, over A2A at their Services."""

from __future__ import annotations

from typing import Any

from agentkube.operator.config import OperatorConfig
from agentkube.operator.rendering import render_agent
from tests.operator.conftest import agent

CONFIG = OperatorConfig()


def _by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in children}


def test_a_planners_pod_delegates_over_a2a_to_each_named_agents_service() -> None:
    planner = agent(name="planner", role="planner", tools=["agent:coder", "agent:critic"])
    children = _by_kind(render_agent(planner, "team", None, CONFIG))
    args = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    tail = args[args.index("--public-url") :]
    assert tail == [
        "--public-url", "http://planner:8080",
        "--peer", "coder=http://coder:8080",
        "--peer", "critic=http://critic:8080",
    ]  # fmt: skip
    egress = children["NetworkPolicy"]["spec"]["egress"]
    reached = sorted(
        to["podSelector"]["matchLabels"]["ai.openvn/agent"]
        for rule in egress
        for to in rule.get("to", [])
        if "ai.openvn/agent" in to.get("podSelector", {}).get("matchLabels", {})
    )
    assert reached == ["coder", "critic"]  # exactly the agents it names, not every peer


def test_an_agent_without_agent_tools_gets_no_peer_flags() -> None:
    children = _by_kind(render_agent(agent(), "team", None, CONFIG))
    args = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peer" not in args and "--public-url" not in args
