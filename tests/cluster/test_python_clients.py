"""The fixture's kubeconfigs work for the Python client the operator uses, not only kubectl."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Node, Secret

from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster


async def test_lightkube_lists_the_simulated_nodes_with_the_admin_kubeconfig(
    testcluster: Cluster,
) -> None:
    client = AsyncClient(config=KubeConfig.from_file(testcluster.kubeconfig))
    try:
        names = {node.metadata.name async for node in client.list(Node) if node.metadata}
    finally:
        await client.close()
    assert names == {name for pool in testcluster.pools.values() for name in pool.nodes}


async def test_service_account_kubeconfig_carries_only_that_accounts_rights(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    testcluster.kubectl("create", "serviceaccount", "reader", "-n", ns)
    testcluster.kubectl(
        "create", "role", "read-cm", "--verb=list", "--resource=configmaps", "-n", ns
    )
    testcluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=read-cm",
        f"--serviceaccount={ns}:reader",
        "-n",
        ns,
    )
    kubeconfig = testcluster.kubeconfig_for_service_account(ns, "reader")
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig))
    try:
        configmaps = {
            cm.metadata.name async for cm in client.list(ConfigMap, namespace=ns) if cm.metadata
        }
        with pytest.raises(ApiError) as denied:
            _ = [s async for s in client.list(Secret, namespace=ns)]
    finally:
        await client.close()
    assert "kube-root-ca.crt" in configmaps
    assert denied.value.status.code == 403
