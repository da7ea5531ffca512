"""Warm pods on the real node get their request over ``pods/exec``: the real API server, kubelet
and container runtime (runc and gVisor) carry the handover's stdin and stdout.

Each case asserts the result, that the pool handed it over by exec (not by the annotation), and
what the pod could not do; the gateway's own RBAC (deploy/gateway/rbac.yaml) with and without
``pods/exec`` shows the right is needed, and its absence costs only speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from hack.testcluster.nodeconfig import NODE_IP
from hack.testcluster.realnode import Info
from lightkube import AsyncClient, KubeConfig

from agentkube.gateway.building import kube_client as gateway_client
from agentkube.sandbox.contract import ExecutionRequest
from agentkube.sandbox.errors import SandboxRequestError
from agentkube.sandbox.kubernetes import KubernetesSandbox
from agentkube.sandbox.kubernetes.pod_exec import PodExec
from agentkube.sandbox.kubernetes.rendering import (
    CONTAINER,
    GATEWAY_LABEL,
    MAX_PAYLOAD_BYTES,
    WARM_LABEL,
    PodSettings,
    handover_command,
    result_from_json,
)
from tests.plugins.testcluster import Cluster
from tests.realnode.pods import RUNTIMES, real_node_settings

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "gateway"


@pytest.fixture
def namespace(testcluster: Cluster) -> Iterator[str]:
    name = testcluster.create_namespace("warm-exec", labels=RESTRICTED)
    yield name
    testcluster.delete_namespace(name)


@pytest.fixture(params=RUNTIMES)
def settings(namespace: str, real_node: Info, request: pytest.FixtureRequest) -> PodSettings:
    return real_node_settings(real_node, namespace, request.param)


@pytest.fixture
async def client(testcluster: Cluster) -> AsyncIterator[AsyncClient]:
    kube = AsyncClient(config=KubeConfig.from_file(testcluster.kubeconfig))
    yield kube
    await kube.close()


@pytest.fixture
async def sandbox(client: AsyncClient, settings: PodSettings) -> AsyncIterator[KubernetesSandbox]:
    backend = KubernetesSandbox(client, settings, warm_pool=1)
    try:
        await backend.start()
        assert backend.warm is not None and backend.warm.ready == 1
        yield backend
    finally:
        await backend.aclose()


def _pods(testcluster: Cluster, settings: PodSettings) -> list[dict]:
    selector = f"{GATEWAY_LABEL}={settings.gateway}"
    found = testcluster.kubectl_json("get", "pods", "-n", settings.namespace, "-l", selector)
    return list(found["items"])


def _ready_pod(testcluster: Cluster, settings: PodSettings) -> str:
    def ready() -> str | None:
        for pod in _pods(testcluster, settings):
            labels = pod["metadata"]["labels"]
            if labels.get(WARM_LABEL) == "ready" and pod["status"].get("phase") == "Running":
                return str(pod["metadata"]["name"])
        return None

    return testcluster.wait_until(ready, "a ready warm pod", timeout=90)


async def test_an_exec_claim_returns_the_result_and_the_pod_is_gone_after(
    testcluster: Cluster, sandbox: KubernetesSandbox, settings: PodSettings
) -> None:
    assert sandbox.warm is not None
    claimed = _ready_pod(testcluster, settings)
    result = await sandbox.execute(ExecutionRequest(code="print(sum(range(10)))"))
    assert (result.exit_code, result.stdout) == (0, "45\n"), result
    assert (sandbox.warm.claims, sandbox.warm.handovers) == (1, 1)

    def gone() -> bool:
        return claimed not in {p["metadata"]["name"] for p in _pods(testcluster, settings)}

    await asyncio.to_thread(testcluster.wait_until, gone, f"the used pod {claimed} to go")
    assert _ready_pod(testcluster, settings) != claimed  # the pool refilled


async def test_code_handed_over_by_exec_has_no_network(
    sandbox: KubernetesSandbox,
) -> None:
    # The exec'd handover runs in the pod's own network namespace, under the deny-all policy.
    server = socket.socket()
    server.bind((NODE_IP, 0))
    server.listen()
    server.setblocking(False)
    code = textwrap.dedent(
        f"""
        import socket
        try:
            socket.create_connection(({NODE_IP!r}, {server.getsockname()[1]}), timeout=2)
            print('reached')
        except OSError:
            print('unreachable')
        try:
            socket.getaddrinfo('kubernetes.default.svc.cluster.local', 443)
            print('resolved')
        except OSError:
            print('no dns')
        """
    )
    try:
        result = await sandbox.execute(ExecutionRequest(code=code))
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the node's listener
    finally:
        server.close()
    assert result.stdout.splitlines() == ["unreachable", "no dns"], result
    assert sandbox.warm is not None and sandbox.warm.handovers == 1


async def test_a_pod_whose_egress_the_policy_does_not_cut_refuses_to_run(
    testcluster: Cluster, client: AsyncClient, namespace: str, settings: PodSettings
) -> None:
    # Policies add up: an allow-all egress beside the gateway's deny-all leaves the pod able to
    # reach the API server, as a network plugin that ignores NetworkPolicy would.
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    testcluster.apply(json.dumps(allow), namespace=namespace)
    backend = KubernetesSandbox(client, dataclasses.replace(settings, isolation_wait_s=3))
    try:
        result = await backend.execute(ExecutionRequest(code="print('ran')"))
    finally:
        await backend.aclose()
    assert result.stdout == "" and result.exit_code is None, result
    assert "deny-all NetworkPolicy is not enforced" in result.stderr, result


async def test_a_warm_pod_over_its_memory_is_reported_as_oom_killed(
    sandbox: KubernetesSandbox,
) -> None:
    # The exec's result alone cannot tell the OOM killer's SIGKILL (runc: the runner reports
    # 137; gVisor: the whole sandbox goes): the pod's status does.
    result = await sandbox.execute(ExecutionRequest(code="x = bytearray(512 * 1024 * 1024)"))
    assert result.killed_reason == "memory", result


async def test_an_oversized_request_is_refused_before_any_pod_is_claimed(
    sandbox: KubernetesSandbox,
) -> None:
    request = ExecutionRequest(code="#" + "x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(SandboxRequestError, match="98304 bytes"):
        await sandbox.execute(request)
    assert sandbox.warm is not None and sandbox.warm.claims == 0 and sandbox.warm.ready == 1


async def test_the_runner_itself_refuses_a_line_longer_than_any_request(
    testcluster: Cluster, client: AsyncClient, sandbox: KubernetesSandbox, settings: PodSettings
) -> None:
    # Whoever else may exec into a warm pod cannot make its runner hold more than the limit.
    name = _ready_pod(testcluster, settings)
    line = b'{"language":"python","code":"' + b"x" * (MAX_PAYLOAD_BYTES + 10) + b'"}\n'
    exec_ = PodExec.of(client)
    try:
        output = await exec_.run(
            settings.namespace, name, CONTAINER, handover_command(), line,
            max_stdout=1 << 20, time_limit_s=60,
        )  # fmt: skip
    finally:
        await exec_.aclose()
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None, output
    assert result.exit_code is None and "longer than 98304 bytes" in result.stderr


def _gateway_rbac(
    testcluster: Cluster, system_ns: str, sandbox_ns: str, *, without: tuple[str, ...]
) -> Path:
    """deploy/gateway's RBAC in the test's namespaces, less the rules of the subresources
    ``without``; a kubeconfig of its ServiceAccount."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    text = rendered.replace("namespace: agentkube-system", f"namespace: {system_ns}")
    text = text.replace("namespace: agentkube-sandbox", f"namespace: {sandbox_ns}")
    objects = [
        o
        for o in yaml.safe_load_all(text)
        if o and o["kind"] in ("ServiceAccount", "Role", "RoleBinding")
    ]
    role = next(o for o in objects if o["kind"] == "Role")
    for granted in ("pods/exec", "pods/attach"):
        assert any(granted in r["resources"] for r in role["rules"]), f"deploy grants {granted}"
    role["rules"] = [r for r in role["rules"] if not set(without) & set(r["resources"])]
    testcluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    return testcluster.kubeconfig_for_service_account(system_ns, "agentkube-sandbox-gateway")


@pytest.mark.parametrize(
    "without",
    [(), ("pods/attach",), ("pods/attach", "pods/exec")],
    ids=["with-attach-and-exec", "without-pods-attach", "without-either"],
)
async def test_the_gateway_s_own_rights_hand_over_by_attach_or_exec_and_without_by_annotation(
    testcluster: Cluster,
    namespace: str,
    real_node: Info,
    without: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentkube.sandbox.kubernetes.warm_pods")
    system_ns = testcluster.create_namespace("gw-system")
    settings = real_node_settings(real_node, namespace, "gvisor")
    kube = gateway_client(_gateway_rbac(testcluster, system_ns, namespace, without=without))
    sandbox = KubernetesSandbox(kube, settings, warm_pool=1)
    try:
        await sandbox.start()
        results = [await sandbox.execute(ExecutionRequest(code=f"print({i})")) for i in (1, 2)]
    finally:
        await sandbox.aclose()
        await kube.close()
        testcluster.delete_namespace(system_ns)
    assert [r.stdout for r in results] == ["1\n", "2\n"], results
    assert sandbox.warm is not None and sandbox.warm.claims + sandbox.warm_misses == 2
    refusals = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert [next(w for w in without if w in line) for line in refusals] == list(without), refusals
    if "pods/exec" in without:
        assert sandbox.warm.handovers == 0
    else:
        assert sandbox.warm.handovers == sandbox.warm.claims >= 1
