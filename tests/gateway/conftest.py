"""Fixtures: a real gateway on loopback in front of the real local sandbox, and the Kubernetes
backend on the real test control plane whose sandbox pods run on its real node (containerd), on
runc and on gVisor (``pod_settings`` is parametrized over both; ``gvisor_pod_settings`` is the
gateway's default where a cluster has gVisor)."""

from __future__ import annotations

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
async def kube_client(testcluster: Cluster) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(config=KubeConfig.from_file(testcluster.kubeconfig))
    yield client
    await client.close()
