"""Fixtures: a real gateway on loopback in front of the real local sandbox, and the Kubernetes
backend on the real test control plane whose sandbox pods run on its real node (containerd), on
runc and on gVisor (``pod_settings`` is parametrized over both). The kubelet stand-in
(``sandbox_kubelet``) serves only the tests that need what a real node cannot give quickly."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from hack.testcluster.realnode import Info as RealNodeInfo
from lightkube import AsyncClient, KubeConfig

from agentkube.gateway.app import GatewaySettings, create_app
from agentkube.gateway.auth import StaticTokens
from agentkube.sandbox.kubernetes.rendering import PodSettings
from tests.plugins.testcluster import Cluster
from tests.realnode.pods import RUNTIMES, real_node_settings
from tests.standins.sandbox_kubelet import SandboxKubelet, running_sandbox_kubelet
from tests.standins.serving import serve

TOKENS = {"token-of-agent-a": "agent-a", "token-of-agent-b": "agent-b"}


@dataclass(frozen=True)
class Gateway:
    url: str


@pytest.fixture
def local_gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway serving the local backend, tokens from TOKENS; indirect param: the quota."""
    from agentkube.sandbox.local import LocalSandbox

    quota = getattr(request, "param", 4)
    app = create_app(
        LocalSandbox(),
        StaticTokens(TOKENS),
        GatewaySettings(max_concurrent_per_agent=quota),
    )
    with serve(app) as url:
        yield Gateway(url)
        # Let the server see the clients' closed connections before it stops, so no socket
        # transport is left half-closed when its loop ends.
        time.sleep(0.2)


POOL_LABEL = "agentkube.openvn/pool"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="session")
def sandbox_kubelet(testcluster: Cluster) -> Iterator[SandboxKubelet]:
    """One stand-in kubelet node in the sandbox pool for the whole session."""
    name = f"sandbox-kubelet-{secrets.token_hex(3)}"
    taint = {"key": POOL_LABEL, "value": "sandbox", "effect": "NoSchedule"}
    with running_sandbox_kubelet(
        testcluster.kubeconfig,
        name,
        {POOL_LABEL: "sandbox"},
        [taint],
        testcluster.kubelet_serving_cert(name),
    ) as kubelet:
        testcluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")
        yield kubelet
    testcluster.kubectl("delete", "node", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def sandbox_namespace(testcluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace that enforces Pod Security `restricted`, as deploy/gateway's does."""
    name = testcluster.create_namespace(f"sbx-{request.node.name}", labels=RESTRICTED)
    yield name
    testcluster.delete_namespace(name)


@pytest.fixture(params=RUNTIMES)
def pod_settings(
    sandbox_namespace: str, real_node: RealNodeInfo, request: pytest.FixtureRequest
) -> PodSettings:
    """Sandbox pods on the real node, once on runc and once on gVisor."""
    return real_node_settings(real_node, sandbox_namespace, request.param)


@pytest.fixture
def gvisor_pod_settings(sandbox_namespace: str, real_node: RealNodeInfo) -> PodSettings:
    """Sandbox pods on the real node on gVisor: the gateway's default where a cluster has it."""
    return real_node_settings(real_node, sandbox_namespace, "gvisor")


@pytest.fixture
def standin_pod_settings(sandbox_namespace: str, sandbox_kubelet: SandboxKubelet) -> PodSettings:
    """Sandbox pods on the kubelet stand-in's node (kwok would 'complete' them without running)."""
    return PodSettings(
        namespace=sandbox_namespace,
        gateway=f"gw-{secrets.token_hex(3)}",
        node_selector={POOL_LABEL: "sandbox", "kubernetes.io/hostname": sandbox_kubelet.node_name},
        ttl_seconds_after_finished=30,
    )


@pytest.fixture
async def kube_client(testcluster: Cluster) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(config=KubeConfig.from_file(testcluster.kubeconfig))
    yield client
    await client.close()
