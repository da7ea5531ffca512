"""``agent:<name>.<namespace>`` on the real control plane: refused with a condition until the
target's annotation names the caller's namespace, then peers and NetworkPolicy on both sides —
each side reconciled when the other changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentkube.operator.cross_namespace import ALLOW_ANNOTATION
from tests.operator.operator_process import OperatorProcess
from tests.operator.test_cluster import ENDPOINT_MODEL, agent, condition, get, wait_condition
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def namespaces_reached(policy: dict[str, Any] | None, direction: str) -> list[str]:
    key = "to" if direction == "egress" else "from"
    return sorted(
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in (policy or {}).get("spec", {}).get(direction, [])
        for peer in rule.get(key, [])
        if "ai.openvn/agent" in peer.get("podSelector", {}).get("matchLabels", {})
        and "namespaceSelector" in peer
    )


def test_delegation_to_another_namespace_needs_the_targets_consent_and_wires_both_sides(
    installed: Cluster, operator: OperatorProcess
) -> None:
    cluster = installed
    plan = cluster.create_namespace("xns-plan", labels=RESTRICTED)
    build = cluster.create_namespace("xns-build", labels=RESTRICTED)
    try:
        for ns in (plan, build):
            cluster.apply(ENDPOINT_MODEL % "m", ns)
        cluster.apply(agent("coder", "m", role="executor"), build)
        tool = f"agent:coder.{build}"
        cluster.apply(agent("planner", "m", role="planner", tools=[tool]), plan)
        found = wait_condition(cluster, "agent", "planner", plan, "DelegationAllowed", "False")
        refused = condition(found, "DelegationAllowed")
        assert refused is not None and refused["reason"] == "DelegationRefused"
        assert f"add {plan} to its annotation {ALLOW_ANNOTATION}" in refused["message"]
        assert namespaces_reached(get(cluster, "networkpolicy", "planner", plan), "egress") == []
        # The target consents: the caller is reconciled on the target's change.
        cluster.kubectl("annotate", "agent", "coder", "-n", build, f"{ALLOW_ANNOTATION}={plan}")
        wait_condition(cluster, "agent", "planner", plan, "DelegationAllowed", "True")

        def wired() -> bool:
            caller = get(cluster, "networkpolicy", "planner", plan)
            target = get(cluster, "networkpolicy", "coder", build)
            return namespaces_reached(caller, "egress") == [build] and namespaces_reached(
                target, "ingress"
            ) == [plan]

        cluster.wait_until(wired, "NetworkPolicies of both sides", 60)
        deployment = get(cluster, "deployment", "planner", plan)
        assert deployment is not None
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"coder.{build}=http://coder.{build}.svc:8080" in args
        # Consent withdrawn: both sides lose the rules again.
        patch = {"metadata": {"annotations": {ALLOW_ANNOTATION: None}}}
        cluster.kubectl(
            "patch", "agent", "coder", "-n", build, "--type=merge", "-p", json.dumps(patch)
        )
        cluster.wait_until(
            lambda: (
                namespaces_reached(get(cluster, "networkpolicy", "planner", plan), "egress") == []
                and namespaces_reached(get(cluster, "networkpolicy", "coder", build), "ingress")
                == []
            ),
            "the rules gone on both sides",
            60,
        )
        wait_condition(cluster, "agent", "planner", plan, "DelegationAllowed", "False")
    finally:
        cluster.delete_namespace(plan)
        cluster.delete_namespace(build)
