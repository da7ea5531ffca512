"""The fixture's kubeconfigs work for the Python clients the operator uses, not only kubectl."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client, config

from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster


async def test_kubernetes_asyncio_lists_the_simulated_nodes_with_the_admin_kubeconfig(
    testcluster: Cluster,
) -> None:
    api = await config.new_client_from_config(config_file=str(testcluster.kubeconfig))
    async with api:
        nodes = await client.CoreV1Api(api).list_node()
    expected = {name for pool in testcluster.pools.values() for name in pool.nodes}
    assert {n.metadata.name for n in nodes.items} == expected


async def test_service_account_kubeconfig_carries_only_that_accounts_rights(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    testcluster.kubectl("create", "serviceaccount", "reader", "-n", cluster_namespace)
    testcluster.kubectl(
        "create", "role", "read-cm", "--verb=list", "--resource=configmaps", "-n", cluster_namespace
    )
    testcluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=read-cm",
        f"--serviceaccount={cluster_namespace}:reader",
        "-n",
        cluster_namespace,
    )
    kubeconfig = testcluster.kubeconfig_for_service_account(cluster_namespace, "reader")
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    async with api:
        core = client.CoreV1Api(api)
        configmaps = await core.list_namespaced_config_map(cluster_namespace)
        with pytest.raises(client.ApiException) as denied:
            await core.list_namespaced_secret(cluster_namespace)
    assert "kube-root-ca.crt" in {cm.metadata.name for cm in configmaps.items}
    assert denied.value.status == 403
