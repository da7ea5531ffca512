"""The scheduler and kwok together: pods land on the pool they ask for and run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.manifests import pod, pod_spec
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", selector
    )["items"]
    return items


def test_deployment_pods_are_scheduled_on_spot_nodes_and_running(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    spot = testcluster.pools["spot"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(spot)},
        },
    }
    testcluster.apply(json.dumps(deployment), namespace=cluster_namespace)

    def all_running() -> list[dict[str, Any]] | None:
        pods = _pods(testcluster, cluster_namespace, "app=web")
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running if len(running) == 3 else None

    running = testcluster.wait_until(all_running, "3 Running pods of Deployment web")
    assert {p["spec"]["nodeName"] for p in running} <= set(spot.nodes)
    testcluster.kubectl(
        "rollout", "status", "deployment/web", "-n", cluster_namespace, "--timeout=60s"
    )


def test_gpu_pod_lands_on_the_gpu_node_and_a_second_one_stays_pending(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    gpu = testcluster.pools["gpu"]
    spec = pod_spec(gpu, resources={"limits": {"nvidia.com/gpu": "1"}})
    assert spec["nodeSelector"]["agentkube.openvn/pool"] == "gpu"
    spec["nodeSelector"] = {"accelerator": "nvidia-tesla"}  # how inference pods select GPUs
    testcluster.apply(pod("infer-0", spec), namespace=cluster_namespace)

    def phase(name: str) -> dict[str, Any]:
        got: dict[str, Any] = testcluster.kubectl_json("get", "pod", name, "-n", cluster_namespace)
        return got

    first = testcluster.wait_until(
        lambda: (p := phase("infer-0"))["status"].get("phase") == "Running" and p,
        "GPU pod infer-0 Running",
    )
    assert first["spec"]["nodeName"] == gpu.nodes[0]

    testcluster.apply(pod("infer-1", spec), namespace=cluster_namespace)

    def unschedulable() -> dict[str, Any] | None:
        conditions = phase("infer-1")["status"].get("conditions", [])
        return next(
            (
                c
                for c in conditions
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
            ),
            None,
        )

    condition = testcluster.wait_until(unschedulable, "pod infer-1 to be found Unschedulable")
    assert "Insufficient nvidia.com/gpu" in condition["message"]
    second = phase("infer-1")
    assert second["status"]["phase"] == "Pending"
    assert not second["spec"].get("nodeName")
