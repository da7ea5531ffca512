"""`helm install` of the chart into a real control plane of its own (the objects the chart
owns — agentkube-system, the operator's ClusterRole, the CRDs — are shared by the session's
cluster, where `kubectl apply -k deploy/` installs them): it creates the operator's CRDs,
RBAC and Deployment, an upgrade switches it to the namespaced mode, and an uninstall removes
everything but the CRDs (Helm never deletes a chart's crds/). No pod runs here (kwok plays
the nodes): the objects are asserted, not readiness."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hack.helm.generate import CHART

from tests.helm.conftest import run_helm, template, values_file
from tests.plugins.testcluster import Cluster

RELEASE = "agentkube"
CRDS = ["agents.ai.openvn", "knowledgebases.ai.openvn", "mcpservers.ai.openvn", "models.ai.openvn"]


def operator_args(cluster: Cluster) -> list[str]:
    deployment = cluster.kubectl_json(
        "get", "deployment", "agentkube-operator", "-n", "agentkube-system"
    )
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def missing(cluster: Cluster, rendered: Path) -> list[str]:
    """The rendered objects the cluster does not have."""
    result = cluster.kubectl("get", "-f", str(rendered), "-o", "name", check=False)
    return [line for line in result.stderr.splitlines() if "NotFound" in line]


@pytest.mark.cluster
def test_helm_installs_upgrades_and_uninstalls_the_operator(
    helm: Path, fresh_testcluster: Cluster, tmp_path: Path
) -> None:
    cluster = fresh_testcluster
    kube = ["--kubeconfig", str(cluster.kubeconfig)]
    tagged = values_file(tmp_path, {"image": {"tag": "helm-test"}})
    run_helm(helm, "install", RELEASE, str(CHART), *kube, "--values", str(tagged))

    crds = cluster.kubectl_json("get", *[f"crd/{c}" for c in CRDS])["items"]
    assert sorted(c["metadata"]["name"] for c in crds) == CRDS
    objects = template(helm, tmp_path, {"image": {"tag": "helm-test"}})
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    assert len(objects) > 20 and missing(cluster, rendered) == []
    owned = ("serviceaccount/agentkube-operator", "deployment/agentkube-operator",
             "deployment/agentkube-sandbox-gateway")  # fmt: skip
    for kind, name in (o.split("/") for o in owned):
        obj = cluster.kubectl_json("get", kind, name, "-n", "agentkube-system")
        assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    operator = cluster.kubectl_json(
        "get", "deployment", "agentkube-operator", "-n", "agentkube-system"
    )
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":helm-test")
    binding = cluster.kubectl_json("get", "clusterrolebinding", "agentkube-operator")
    assert binding["subjects"][0]["name"] == "agentkube-operator"
    policy = cluster.kubectl_json(
        "get", "validatingadmissionpolicy", "agentkube-operator-owns-what-it-writes"
    )
    assert policy["spec"]["failurePolicy"] == "Fail"
    sa = "system:serviceaccount:agentkube-system:agentkube-operator"
    can = cluster.kubectl(
        "auth", "can-i", "list", "agents", "--all-namespaces", f"--as={sa}", check=False
    )
    assert can.stdout.strip() == "yes"

    # The namespaced mode, by upgrade: the ClusterRole goes, a Role in the watched namespace comes.
    namespaced = values_file(
        tmp_path,
        {"image": {"tag": "helm-test"}, "namespaced": {"enabled": True, "namespaces": ["team-a"]}},
    )
    run_helm(helm, "upgrade", RELEASE, str(CHART), *kube, "--values", str(namespaced))
    assert cluster.kubectl("get", "clusterrole", "agentkube-operator", check=False).returncode != 0
    assert "--namespace=team-a" in operator_args(cluster)
    for ns, verdict in (("team-a", "yes"), ("default", "no")):
        can = cluster.kubectl(
            "auth", "can-i", "list", "agents", "-n", ns, f"--as={sa}", check=False
        )
        assert can.stdout.strip() == verdict, ns

    run_helm(helm, "uninstall", RELEASE, *kube)
    left = ("deployment/agentkube-operator", "deployment/agentkube-sandbox-gateway",
            "role/agentkube-operator")  # fmt: skip
    for kind, name in (o.split("/") for o in left):
        ns = "team-a" if kind == "role" else "agentkube-system"
        gone = cluster.kubectl("get", kind, name, "-n", ns, "--ignore-not-found", "-o", "name")
        assert gone.stdout.strip() == "", f"{kind} {name} was left"
    kept = cluster.kubectl_json("get", *[f"crd/{c}" for c in CRDS])["items"]
    assert len(kept) == len(CRDS)
