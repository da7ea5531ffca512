"""The warm pool on the real control plane: claim a pre-created pod, get the result, refill.

By exec (the default: tests/realnode/test_warm_exec.py has more) and by annotation (the
fallback where the gateway may not exec)."""

from __future__ import annotations

import asyncio

import pytest
from lightkube import AsyncClient

from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.kubernetes import KubernetesSandbox
from agentkube.sandbox.kubernetes.rendering import GATEWAY_LABEL, WARM_LABEL, PodSettings
from tests.plugins.testcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]


def _pods(testcluster: Cluster, settings: PodSettings) -> list[dict]:
    selector = f"{GATEWAY_LABEL}={settings.gateway}"
    return testcluster.kubectl_json("get", "pods", "-n", settings.namespace, "-l", selector)[
        "items"
    ]


async def test_execution_claims_a_warm_pod_which_is_replaced_after_one_use(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings, warm_pool=2)
    try:
        await sandbox.start()
        assert sandbox.warm is not None and sandbox.warm.ready == 2
        before = {p["metadata"]["name"] for p in _pods(testcluster, pod_settings)}
        # 20 KB of output: more than the termination message holds, so it comes from the log.
        result = await sandbox.execute(
            ExecutionRequest(
                code="import sys; print('warm' * 5000); print(sys.argv, file=sys.stderr)"
            )
        )
        assert result.stdout == "warm" * 5000 + "\n" and result.exit_code == 0
        assert sandbox.warm.claims == 1 and sandbox.warm.misses == 0
        assert sandbox.warm.handovers == 1  # the result came back over pods/exec

        def refilled() -> bool:
            pods = _pods(testcluster, pod_settings)
            names = {p["metadata"]["name"] for p in pods}
            ready = [p for p in pods if p["metadata"]["labels"].get(WARM_LABEL) == "ready"]
            return len(ready) == 2 and len(names - before) == 1 and len(pods) == 2

        # The used pod is gone, one new pod took its place.
        await asyncio.to_thread(testcluster.wait_until, refilled, "the warm pool to refill")
    finally:
        await sandbox.aclose()
    testcluster.wait_until(
        lambda: not _pods(testcluster, pod_settings), "the warm pods to be deleted on close"
    )


async def test_warm_pod_execution_honours_the_request_timeout(
    kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings, warm_pool=1)
    try:
        await sandbox.start()
        result = await sandbox.execute(
            ExecutionRequest(code="import time; time.sleep(60)", limits=Limits(timeout_s=1))
        )
    finally:
        await sandbox.aclose()
    assert result.killed_reason == "timeout"


async def test_request_with_other_resources_takes_the_cold_job_path(
    kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings, warm_pool=1)
    try:
        await sandbox.start()
        result = await sandbox.execute(
            ExecutionRequest(code="print('cold')", limits=Limits(memory_bytes=256 * 1024 * 1024))
        )
    finally:
        await sandbox.aclose()
    assert result.stdout == "cold\n"
    assert sandbox.warm is not None and sandbox.warm.claims == 0


async def test_without_exec_a_warm_pod_takes_its_request_from_its_annotation(
    kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings, warm_pool=1, pod_exec=False)
    try:
        await sandbox.start()
        # 20 KB of output: the whole result comes from the pod log, not from an exec.
        result = await sandbox.execute(ExecutionRequest(code="print('annotated' * 3000)"))
    finally:
        await sandbox.aclose()
    shown = result.model_copy(update={"stdout": result.stdout[:100]})  # the rest, if it fails
    assert result.stdout == "annotated" * 3000 + "\n" and result.truncated is False, shown
    assert sandbox.warm is not None and (sandbox.warm.claims, sandbox.warm.handovers) == (1, 0)
