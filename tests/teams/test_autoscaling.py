"""Autoscaled executors (pure): the API's rules, KEDA's objects, the Deployment left to KEDA."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from agentkube.api.crds import crd
from agentkube.api.models import Agent
from agentkube.operator.autoscaling import render_scaling, replicas_left_to_keda
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import HASH_ANNOTATION
from agentkube.operator.rendering import render_agent
from agentkube.operator.team_wiring import TeamWiring
from tests.operator.conftest import agent

CONFIG = OperatorConfig()
AUTOSCALE = {"minReplicas": 0, "maxReplicas": 5, "lagTarget": 20}


def test_autoscale_is_for_executors_and_its_bounds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="set role: executor"):
        agent(role="standalone", autoscale=AUTOSCALE)
    with pytest.raises(ValidationError, match=r"minReplicas \(6\) exceeds maxReplicas \(5\)"):
        agent(role="executor", autoscale={**AUTOSCALE, "minReplicas": 6})
    scaled = agent(role="executor", autoscale={"maxReplicas": 3})
    assert scaled.spec.autoscale is not None
    assert (scaled.spec.autoscale.min_replicas, scaled.spec.autoscale.lag_target) == (0, 5)


def test_the_crd_carries_the_same_rules_and_a_pending_column() -> None:
    version = crd(Agent)["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "!has(self.autoscale) || self.role == 'executor'" in rules
    autoscale = spec["properties"]["autoscale"]
    assert autoscale["required"] == ["maxReplicas"]
    assert autoscale["properties"]["minReplicas"]["minimum"] == 0
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Pending"] == ".status.pendingTasks"


def test_the_scaled_object_watches_the_executors_stream_with_the_namespaces_credentials() -> None:
    worker = agent(name="worker", role="executor", autoscale=AUTOSCALE)
    auth, scaled = render_scaling(worker, "team", "rediss://redis.mem.svc:6380/2")
    assert auth["kind"] == "TriggerAuthentication"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "username", "name": "agentkube-memory", "key": "username"},
        {"parameter": "password", "name": "agentkube-memory", "key": "password"},
    ]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "worker"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 5)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger == {
        "type": "redis-streams",
        "metadata": {
            "address": "redis.mem.svc:6380",
            "stream": "agentkube:team:teams:worker:tasks",
            "consumerGroup": "workers",
            "lagCount": "20",
            "databaseIndex": "2",
            "enableTLS": "true",
        },
        "authenticationRef": {"name": "worker"},
    }
    for obj in (auth, scaled):
        owner = obj["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Agent", "worker", True)
    assert render_scaling(agent(role="executor"), "team", "redis://r:6379") == []


def test_the_deployment_left_to_keda_has_no_replicas_and_a_new_hash() -> None:
    worker = agent(name="worker", role="executor", replicas=2, autoscale=AUTOSCALE)
    children = render_agent(worker, "team", None, OperatorConfig())

    def deployment(objs: list[dict[str, Any]]) -> dict[str, Any]:
        return next(c for c in objs if c["kind"] == "Deployment")

    left = replicas_left_to_keda(children)
    assert deployment(children)["spec"]["replicas"] == 2
    assert "replicas" not in deployment(left)["spec"]
    hashes = {deployment(o)["metadata"]["annotations"][HASH_ANNOTATION] for o in (children, left)}
    assert len(hashes) == 2  # applying it is a change: the field is given up
    assert [c["kind"] for c in left] == [c["kind"] for c in children]


def test_without_shared_memory_there_is_no_queue_to_scale_on() -> None:
    worker = agent(name="worker", role="executor", replicas=2, autoscale=AUTOSCALE)
    children = render_agent(worker, "team", None, OperatorConfig())

    class NoDeletes:
        async def delete(self, kind: str, namespace: str, name: str) -> None:
            raise AssertionError(f"nothing to delete, yet {kind} {namespace}/{name}")

    wiring = TeamWiring(config=CONFIG, cache=Cache(), api=NoDeletes(), keda=None, queues=None)
    adjusted = asyncio.run(wiring.adjust(worker, "team", children))
    (check,) = adjusted.checks
    assert (check.type, check.ok, check.reason) == ("Autoscaling", False, "NoSharedQueue")
    assert adjusted.children == children  # spec.replicas holds
    assert "pendingTasks" not in adjusted.extra
