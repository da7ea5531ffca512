"""``agent:<name>.<namespace>`` (pure, on the operator's cache): allowed only by the target's
annotation; then peers and NetworkPolicy rules on both sides, and both sides reconciled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from agentkube.api.teams import select_team
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.cross_namespace import ALLOW_ANNOTATION
from agentkube.operator.rendering import render_agent
from agentkube.operator.team_wiring import Adjusted, TeamWiring
from tests.operator.conftest import agent

CONFIG = OperatorConfig()
NS_LABEL = "kubernetes.io/metadata.name"


def cached(cache: Cache, name: str, namespace: str, **spec: Any) -> Any:
    allow = spec.pop("allow", None)
    found = agent(name=name, **spec)
    annotations = {ALLOW_ANNOTATION: allow} if allow is not None else {}
    meta = found.metadata.model_copy(update={"namespace": namespace, "annotations": annotations})
    found = found.model_copy(update={"metadata": meta})
    cache.observe(found.model_dump(by_alias=True, exclude_none=True, mode="json"), "Agent")
    return found


class Recorded:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, str]] = []
        self.deleted: list[tuple[str, str, str]] = []

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((kind, namespace, name))


def adjust(wiring: TeamWiring, found: Any, namespace: str) -> Adjusted:
    children = render_agent(found, namespace, None, CONFIG)
    return asyncio.run(wiring.adjust(found, namespace, children))


def by_kind(adjusted: Adjusted, kind: str) -> dict[str, Any]:
    return next(c for c in adjusted.children if c["kind"] == kind)


def test_the_tool_names_another_namespace_and_a_file_leaves_it_to_the_cluster() -> None:
    planner = agent(name="planner", role="planner", tools=["agent:coder.build"])
    team = select_team([planner], "team.yaml")
    assert list(team.members) == ["planner"]
    with pytest.raises(ValidationError, match=r"agent:<name>\.<namespace>"):
        agent(tools=["agent:coder.build.extra"])


def test_a_target_that_does_not_name_the_callers_namespace_is_refused_with_a_condition() -> None:
    cache = Cache()
    cached(cache, "coder", "build", role="executor", allow="other")
    planner = cached(cache, "planner", "plan", role="planner", tools=["agent:coder.build"])
    recorded = Recorded()
    wiring = TeamWiring(config=CONFIG, cache=cache, api=recorded, keda=None, queues=None)
    adjusted = adjust(wiring, planner, "plan")
    (check,) = adjusted.checks
    assert (check.type, check.ok, check.reason) == ("DelegationAllowed", False, "DelegationRefused")
    assert f"add plan to its annotation {ALLOW_ANNOTATION}" in check.message
    args = by_kind(adjusted, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peer" not in args
    egress = by_kind(adjusted, "NetworkPolicy")["spec"]["egress"]
    reached = [
        to["podSelector"] for rule in egress for to in rule.get("to", []) if "podSelector" in to
    ]
    assert not [s for s in reached if "ai.openvn/agent" in s.get("matchLabels", {})]
    missing = cached(cache, "lost", "plan", role="planner", tools=["agent:ghost.nowhere"])
    (check,) = adjust(wiring, missing, "plan").checks
    assert "no Agent nowhere/ghost is known" in check.message


def test_an_allowed_delegation_wires_the_peer_and_both_network_policies() -> None:
    cache = Cache()
    coder = cached(cache, "coder", "build", role="executor", allow="plan, qa")
    planner = cached(cache, "planner", "plan", role="planner", tools=["agent:coder.build"])
    cached(cache, "intruder", "evil", role="planner", tools=["agent:coder.build"])
    recorded = Recorded()
    wiring = TeamWiring(
        config=CONFIG,
        cache=cache,
        api=recorded,
        keda=None,
        queues=None,
        submit=recorded.submitted.append,
    )
    caller = adjust(wiring, planner, "plan")
    (check,) = caller.checks
    assert (check.ok, check.message) == (True, "may call coder.build")
    args = by_kind(caller, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--public-url") :] == [
        "--public-url", "http://planner:8080",
        "--peer", "coder.build=http://coder.build.svc:8080",
    ]  # fmt: skip
    egress = by_kind(caller, "NetworkPolicy")["spec"]["egress"][-1]
    assert egress["to"] == [
        {
            "namespaceSelector": {"matchLabels": {NS_LABEL: "build"}},
            "podSelector": {
                "matchLabels": {"ai.openvn/agent": "coder", "app.kubernetes.io/component": "agent"}
            },
        }
    ]
    assert recorded.submitted == [("Agent", "build", "coder")]  # the target renders it too
    target = adjust(wiring, coder, "build")
    ingress = by_kind(target, "NetworkPolicy")["spec"]["ingress"]
    sources = ingress[-1]["from"]
    assert [s["namespaceSelector"]["matchLabels"][NS_LABEL] for s in sources] == ["plan"]
    assert sources[0]["podSelector"]["matchLabels"]["ai.openvn/agent"] == "planner"
    assert target.checks == []  # the target itself delegates nowhere
    # Unchanged relations ask for no more reconciles.
    adjust(wiring, planner, "plan")
    adjust(wiring, coder, "build")
    assert recorded.submitted == [("Agent", "build", "coder"), ("Agent", "plan", "planner")]
