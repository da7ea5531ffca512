"""The controller manager's controllers: Job completion, TTL clean-up, garbage collection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.manifests import pod_spec
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster


def test_job_completes_and_ttl_after_finished_removes_it(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "ttlSecondsAfterFinished": 3,
            "backoffLimit": 0,
            "template": {
                "spec": {**pod_spec(testcluster.pools["sandbox"]), "restartPolicy": "Never"}
            },
        },
    }
    testcluster.apply(json.dumps(job), namespace=cluster_namespace)

    def get_job() -> dict[str, Any] | None:
        result = testcluster.kubectl(
            "get", "job", "once", "-n", cluster_namespace, "-o", "json", check=False
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    def complete() -> dict[str, Any] | None:
        got = get_job()
        conditions = (got or {}).get("status", {}).get("conditions", [])
        done = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
        return got if done else None

    finished = testcluster.wait_until(complete, "Job once to complete")
    assert finished["status"]["succeeded"] == 1
    testcluster.wait_until(lambda: get_job() is None, "the TTL controller to delete Job once")


def test_deleting_an_owner_garbage_collects_its_dependents(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    testcluster.kubectl("create", "configmap", "owner", "-n", ns)
    owner = testcluster.kubectl_json("get", "configmap", "owner", "-n", ns)
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    testcluster.apply(json.dumps(dependent), namespace=ns)
    testcluster.kubectl("create", "configmap", "bystander", "-n", ns)

    testcluster.kubectl("delete", "configmap", "owner", "-n", ns)

    testcluster.wait_until(
        lambda: (
            testcluster.kubectl("get", "configmap", "dependent", "-n", ns, check=False).returncode
            != 0
        ),
        "the garbage collector to delete ConfigMap dependent",
    )
    assert testcluster.kubectl("get", "configmap", "bystander", "-n", ns).returncode == 0
