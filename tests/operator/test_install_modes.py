"""The two install modes and what limits the operator in each.

- Namespaced (deploy/namespaced, the default for multi-tenant clusters): a Role + RoleBinding
  per watched namespace and ``--namespace``; on the real control plane the operator reconciles
  with exactly that Role and can touch nothing in another namespace.
- Cluster-wide (deploy/): the ValidatingAdmissionPolicy lets the operator's ServiceAccount
  write only objects it owns, never in kube-system — enforced by the real API server.
- NetworkPolicies of both: the gateway accepts only agent pods.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.helm.generate import kustomize

from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import MANAGED_BY, MANAGED_BY_LABEL, agent_pods
from tests.operator.conftest import OPERATOR_NAMESPACE
from tests.operator.operator_process import OperatorProcess, cluster_config
from tests.operator.test_cluster import ENDPOINT_MODEL, agent, condition, get, wait_condition
from tests.plugins.testcluster import Cluster

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def find(objects: list[JSON], kind: str, name: str) -> JSON:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def kinds(objects: list[JSON]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


# --------------------------------------------------------------------------- the manifests


def test_the_namespaced_mode_has_no_cluster_wide_rights_for_the_operator() -> None:
    namespaced = kustomize(DEPLOY / "namespaced")
    assert ("ClusterRole", "agentkube-operator") not in kinds(namespaced)
    assert ("ClusterRoleBinding", "agentkube-operator") not in kinds(namespaced)
    binding = find(namespaced, "RoleBinding", "agentkube-operator")
    watched = binding["metadata"]["namespace"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "agentkube-operator", "namespace": OPERATOR_NAMESPACE}
    ]
    (operator,) = find(namespaced, "Deployment", "agentkube-operator")["spec"]["template"]["spec"][
        "containers"
    ]
    assert f"--namespace={watched}" in operator["args"]


def test_the_namespaced_role_grants_exactly_what_the_cluster_role_grants() -> None:
    role = find(kustomize(DEPLOY / "namespaced"), "Role", "agentkube-operator")
    cluster_role = find(kustomize(DEPLOY), "ClusterRole", "agentkube-operator")
    assert role["rules"] == cluster_role["rules"]


def test_both_modes_install_every_crd_and_the_same_everything_else() -> None:
    crds = {p.name for p in (DEPLOY / "crds").glob("ai.openvn_*.yaml")}
    listed = yaml.safe_load((DEPLOY / "crds" / "Kustomization").read_text())["resources"]
    assert set(listed) == crds
    cluster_wide, namespaced = kinds(kustomize(DEPLOY)), kinds(kustomize(DEPLOY / "namespaced"))
    only_cluster_wide = {("ClusterRole", "agentkube-operator")} | {
        ("ClusterRoleBinding", "agentkube-operator")
    }
    assert cluster_wide - namespaced == only_cluster_wide
    assert {k for k, _ in namespaced - cluster_wide} == {"Namespace", "Role", "RoleBinding"}


def test_the_gateway_accepts_only_agent_pods_on_its_port() -> None:
    objects = kustomize(DEPLOY)
    policy = find(objects, "NetworkPolicy", "agentkube-sandbox-gateway")["spec"]
    pods = find(objects, "Deployment", "agentkube-sandbox-gateway")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": agent_pods()}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    # ... and agents' own egress policy names exactly these pods.
    peer = OperatorConfig().sandbox_gateway
    assert peer.pod_labels.items() <= pods["metadata"]["labels"].items()


def test_the_operator_is_reached_only_on_its_metrics_and_liveness_ports() -> None:
    objects = kustomize(DEPLOY)
    policy = find(objects, "NetworkPolicy", "agentkube-operator")["spec"]
    pods = find(objects, "Deployment", "agentkube-operator")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()
    (rule,) = policy["ingress"]
    declared = {p["containerPort"] for p in pods["spec"]["containers"][0]["ports"]}
    assert {p["port"] for p in rule["ports"]} == declared == {8081, 9090}
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}


# --------------------------------------------------------------------------- real control plane


def namespaced_rbac(watched: str, operator_ns: str) -> str:
    """deploy/namespaced's ServiceAccount, Role and RoleBinding, moved to test namespaces."""
    objects = kustomize(DEPLOY / "namespaced")
    wanted = [
        find(objects, "ServiceAccount", "agentkube-operator"),
        find(objects, "Role", "agentkube-operator"),
        find(objects, "RoleBinding", "agentkube-operator"),
    ]
    text = yaml.safe_dump_all(wanted)
    return text.replace(f"namespace: {OPERATOR_NAMESPACE}", f"namespace: {operator_ns}").replace(
        "namespace: agents", f"namespace: {watched}"
    )


@pytest.mark.cluster
def test_the_namespaced_operator_works_with_exactly_its_role_and_nothing_else(
    installed: Cluster, tmp_path: Path
) -> None:
    cluster = installed
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    operator_ns = cluster.create_namespace("ns-operator")
    watched = cluster.create_namespace("watched", labels=restricted)
    other = cluster.create_namespace("other", labels=restricted)
    cluster.apply(namespaced_rbac(watched, operator_ns))
    kubeconfig = cluster.kubeconfig_for_service_account(operator_ns, "agentkube-operator")
    process = OperatorProcess(
        cluster, kubeconfig, tmp_path, cluster_config(cluster), namespaces=(watched,)
    )
    process.start()
    try:
        for ns in (watched, other):
            cluster.apply(ENDPOINT_MODEL % "m", ns)
            cluster.apply(agent("scoped", "m", memory="persistent"), ns)
        ready = wait_condition(cluster, "agent", "scoped", watched, "Reconciled")
        assert condition(ready, "Reconciled")["reason"] == "Applied"  # type: ignore[index]
        for kind in ("serviceaccount", "configmap", "service", "networkpolicy", "deployment"):
            assert get(cluster, kind, "scoped", watched) is not None, kind
        # The other namespace's Agent is not this operator's: it wrote nothing there (another
        # test's cluster-wide operator may be running, so the objects themselves prove nothing).
        assert process.writes_in(watched) >= 6
        assert process.writes_in(other) == 0

        def can(*args: str) -> str:
            result = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
            return result.stdout.strip()

        assert can("patch", "deployments", "-n", watched) == "yes"
        assert can("patch", "deployments", "-n", other) == "no"
        assert can("get", "agents", "-n", other) == "no"
        assert can("list", "agents", "--all-namespaces") == "no"
        assert can("create", "configmaps", "-n", "kube-system") == "no"
    finally:
        process.stop()
        for ns in (operator_ns, watched, other):
            cluster.delete_namespace(ns)


def owned_config_map(name: str, owner: JSON, **labels: str) -> str:
    meta = owner["metadata"]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "ai.openvn/v1",
                        "kind": "Agent",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
        }
    )


@pytest.mark.cluster
def test_the_admission_policy_limits_the_cluster_wide_operator_to_what_it_owns(
    installed: Cluster, operator_kubeconfig: Path, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    managed = {MANAGED_BY_LABEL: MANAGED_BY}
    cluster.apply(agent("owner", "none"), ns)  # no operator needed: only its uid is used
    owner = cluster.kubectl_json("get", "agent", "owner", "-n", ns)

    def as_operator(manifest: str, namespace: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "create", "-n", namespace, "-f", "-",
            input=manifest, kubeconfig=operator_kubeconfig, check=False,
        )  # fmt: skip

    # RBAC allows all of these; the policy (once the API server has loaded it) does not.
    unlabelled = owned_config_map(f"u-{secrets.token_hex(3)}", owner)

    def refused() -> str | None:
        result = as_operator(unlabelled, ns)
        if result.returncode == 0:
            cluster.kubectl(
                "delete", "configmap", "-n", ns, json.loads(unlabelled)["metadata"]["name"]
            )
            return None
        return result.stderr

    stderr = cluster.wait_until(refused, "the admission policy to be in force", 60)
    assert "writes only objects labelled app.kubernetes.io/managed-by=agentkube-operator" in stderr
    no_owner = json.loads(owned_config_map("no-owner", owner, **managed))
    del no_owner["metadata"]["ownerReferences"]
    stderr = as_operator(json.dumps(no_owner), ns).stderr
    assert "controlled by an Agent or a Model" in stderr
    stderr = as_operator(owned_config_map("sys", owner, **managed), "kube-system").stderr
    assert "never writes in namespace kube-system" in stderr
    assert as_operator(owned_config_map("mine", owner, **managed), ns).returncode == 0

    # An object someone else made cannot be labelled into the operator's hands, nor deleted.
    cluster.apply(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "theirs"},
                              "spec": {"ports": [{"port": 80}]}}), ns)  # fmt: skip
    grab = cluster.kubectl(
        "label", "service", "theirs", "-n", ns, f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        kubeconfig=operator_kubeconfig, check=False,
    )  # fmt: skip
    assert grab.returncode != 0 and "is not" in grab.stderr
    delete = cluster.kubectl(
        "delete", "service", "theirs", "-n", ns, kubeconfig=operator_kubeconfig, check=False
    )
    assert delete.returncode != 0 and "ValidatingAdmissionPolicy" in delete.stderr
    assert get(cluster, "service", "theirs", ns) is not None


@pytest.mark.cluster
def test_an_existing_object_without_the_agents_controller_reference_is_not_adopted(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    squatter = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "squat", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    cluster.apply(json.dumps(squatter), ns)
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("squat", "m"), ns)
    refused = wait_condition(cluster, "agent", "squat", ns, "Reconciled", "False")
    reconciled = condition(refused, "Reconciled")
    assert reconciled is not None and reconciled["reason"] == "AdoptionRefused"
    assert reconciled["message"].startswith(f"Service {ns}/squat already exists")
    service = get(cluster, "service", "squat", ns)
    assert service is not None
    assert "ownerReferences" not in service["metadata"]
    assert service["metadata"]["labels"] == {"team": "web"}
    assert service["spec"]["selector"] == {"app": "web"}
    # Once the squatter is gone, the retry creates the Agent's own Service.
    cluster.kubectl("delete", "service", "squat", "-n", ns)
    wait_condition(cluster, "agent", "squat", ns, "Reconciled", timeout=90)
    mine = get(cluster, "service", "squat", ns)
    assert mine is not None and mine["metadata"]["ownerReferences"][0]["kind"] == "Agent"
