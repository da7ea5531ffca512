"""Admission and authorization: Pod Security and RBAC are the real plugins."""

from __future__ import annotations

import pytest

from tests.cluster.manifests import pod, pod_spec
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

PRIVILEGED = pod_spec(securityContext={"privileged": True})


def test_privileged_pod_is_refused_in_a_restricted_namespace(testcluster: Cluster) -> None:
    restricted = testcluster.create_namespace(
        "restricted", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    try:
        result = testcluster.apply(pod("root", PRIVILEGED), restricted, check=False)
        assert result.returncode != 0
        assert 'violates PodSecurity "restricted:latest"' in result.stderr
        assert "privileged" in result.stderr
        missing = testcluster.kubectl("get", "pod", "root", "-n", restricted, check=False)
        assert missing.returncode != 0
    finally:
        testcluster.delete_namespace(restricted)


def test_the_same_privileged_pod_is_admitted_where_no_policy_is_enforced(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    result = testcluster.apply(pod("root", PRIVILEGED), cluster_namespace, check=False)
    assert result.returncode == 0, result.stderr


def test_service_account_without_bindings_is_forbidden_by_rbac(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    testcluster.kubectl("create", "serviceaccount", "nobody", "-n", cluster_namespace)
    kubeconfig = testcluster.kubeconfig_for_service_account(cluster_namespace, "nobody")
    result = testcluster.kubectl(
        "get", "pods", "-n", cluster_namespace, kubeconfig=kubeconfig, check=False
    )
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert f"system:serviceaccount:{cluster_namespace}:nobody" in result.stderr
