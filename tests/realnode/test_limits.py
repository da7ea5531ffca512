"""Resource limits on the real node are the kernel's: a pod past its memory limit is OOM-killed."""

from __future__ import annotations

from typing import Any

import pytest
from hack.testcluster.realnode import Info

from tests.plugins.testcluster import Cluster
from tests.realnode.pods import RUNTIMES, create_pod, describe, pod_spec, python, terminated

pytestmark = pytest.mark.cluster


# The OOM killer's SIGKILL is exit code 137 under runc; gVisor reports its sandbox's kill as 128.
EXIT_CODES = {"runc": 137, "gvisor": 128}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_pod_over_its_128mi_memory_limit_is_oom_killed(
    testcluster: Cluster, cluster_namespace: str, real_node: Info, runtime: str
) -> None:
    # bytes * n writes every page: 300 MiB resident, past the 128 MiB limit.
    code = python("x = b'x' * (300 << 20); print('survived')")
    spec = pod_spec(real_node, code, runtime=runtime, memory="128Mi")
    create_pod(testcluster, cluster_namespace, "hog", spec, {"app": "hog"})

    def finished() -> dict[str, Any] | None:
        pod = testcluster.kubectl_json("get", "pod", "hog", "-n", cluster_namespace)
        return terminated(pod)

    state = testcluster.wait_until(finished, "pod hog to be terminated", timeout=90)

    assert state["reason"] == "OOMKilled", describe(testcluster, cluster_namespace)
    assert state["exitCode"] == EXIT_CODES[runtime]

    def phase() -> str | None:
        pod = testcluster.kubectl_json("get", "pod", "hog", "-n", cluster_namespace)
        return pod["status"].get("phase") if pod["status"].get("phase") != "Running" else None

    assert testcluster.wait_until(phase, "pod hog's phase to follow") == "Failed"
