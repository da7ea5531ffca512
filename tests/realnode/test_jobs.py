"""Jobs on the real node: code runs in a real container and the Job ends as Kubernetes says."""

from __future__ import annotations

import pytest
from hack.testcluster.realnode import Info

from tests.plugins.testcluster import Cluster
from tests.realnode.pods import (
    RUNTIMES,
    create_job,
    describe,
    job_condition,
    job_pods,
    pod_spec,
    python,
    wait_job,
)

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_job_printing_1_succeeds_and_its_log_says_1(
    testcluster: Cluster, cluster_namespace: str, real_node: Info, runtime: str
) -> None:
    spec = pod_spec(real_node, python("print(1)"), runtime=runtime)
    name = create_job(testcluster, cluster_namespace, spec)

    condition = wait_job(testcluster, cluster_namespace, name)

    assert condition["type"] == "Complete", describe(testcluster, cluster_namespace)
    pod = job_pods(testcluster, cluster_namespace, name)[0]
    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["spec"].get("runtimeClassName") == (None if runtime == "runc" else runtime)
    log = testcluster.kubectl("logs", f"job/{name}", "-n", cluster_namespace).stdout
    assert log == "1\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_job_past_its_active_deadline_is_killed(
    testcluster: Cluster, cluster_namespace: str, real_node: Info, runtime: str
) -> None:
    spec = pod_spec(real_node, python("import time; time.sleep(300)"), runtime=runtime)
    name = create_job(testcluster, cluster_namespace, spec, deadline_seconds=3)

    condition = wait_job(testcluster, cluster_namespace, name, timeout=60)

    assert condition["type"] == "Failed"
    assert condition["reason"] == "DeadlineExceeded"

    def killed() -> bool:
        # The Job controller deletes its active pods; the kubelet kills their containers.
        pods = job_pods(testcluster, cluster_namespace, name)
        return all(p["status"].get("phase") in ("Failed", "Succeeded") for p in pods)

    testcluster.wait_until(killed, f"the pod of Job {name} to be killed", timeout=60)
    assert job_condition(testcluster, cluster_namespace, name) == condition
