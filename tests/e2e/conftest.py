"""The end-to-end run's cluster: the test cluster made to look like a plain one-node cluster,
and agentkube installed on it exactly as the README's "On a cluster" says (`kubectl apply -k
deploy/namespaced`: the operator's rights in the `agents` namespace only), from the project's
image.

- `plain_cluster`: the simulated (kwok) nodes are cordoned and the real node's taints lifted
  for the module, so every pod lands on the one node that runs containers; both are restored
  afterwards, for the tests that come later.
- `installed`: the project's image and the node's python image are imported into the node's
  containerd under the references deploy/ names (ghcr.io/openvn/agentkube:…, python:3.12-slim),
  so the manifests apply unchanged and nothing is pulled. Afterwards every namespace and
  cluster-wide object of the install is deleted (the CRDs stay: the session's other tests use
  them), and the module waits until the operator is gone, so it reconciles nothing later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.testcluster.realnode import Info, RealNode

from tests.e2e.steps import deployment_available, say, wait_for
from tests.plugins.project_image import ProjectImage
from tests.plugins.testcluster import Cluster

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "namespaced"
SYSTEM_NS = "agentkube-system"
SANDBOX_NS = "agentkube-sandbox"
AGENTS_NS = "agents"  # the namespace deploy/namespaced watches
INSTALL_LABEL = "app.kubernetes.io/part-of=agentkube"
CLUSTER_KINDS = (
    "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings"
)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def deploy_images() -> tuple[str, str]:
    """(the project's image, the sandbox pods' image) as deploy/ names them."""
    gateway = next(
        d for d in _documents(DEPLOY / "gateway" / "deployment.yaml") if d["kind"] == "Deployment"
    )
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    sandbox = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--image="))
    return container["image"], sandbox


def full_reference(image: str) -> str:
    """containerd's name for a reference: `python:3.12-slim` is docker.io/library/python:…"""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


@pytest.fixture(scope="module")
def plain_cluster(testcluster: Cluster) -> Iterator[Info]:
    node = testcluster.real_node
    if node is None:
        pytest.fail(
            f"the end-to-end run needs the real node: {testcluster.real_node_unavailable}",
            pytrace=False,
        )
    simulated = [
        n["metadata"]["name"]
        for n in testcluster.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    ]
    taints = testcluster.kubectl_json("get", "node", node.name)["spec"].get("taints", [])
    say(f"cordoning the simulated nodes ({', '.join(simulated)}), lifting {node.name}'s taints")
    for name in simulated:
        testcluster.kubectl("cordon", name)
    testcluster.kubectl("patch", "node", node.name, "--type=merge", "-p", '{"spec":{"taints":[]}}')
    try:
        yield node
    finally:
        patch = json.dumps({"spec": {"taints": taints}})
        testcluster.kubectl("patch", "node", node.name, "--type=merge", "-p", patch)
        for name in simulated:
            testcluster.kubectl("uncordon", name)


@pytest.fixture(scope="module")
def installed(
    testcluster: Cluster, plain_cluster: Info, project_image: ProjectImage
) -> Iterator[str]:
    """agentkube installed by `kubectl apply -k deploy/namespaced`; yields the image reference."""
    node = RealNode(testcluster.state_dir)
    agentkube_image, sandbox_image = deploy_images()
    say(f"importing {project_image.reference} as {agentkube_image}")
    node.import_image(project_image.archive)
    node.tag_image(project_image.reference, full_reference(agentkube_image))
    node.tag_image(plain_cluster.images["python"], full_reference(sandbox_image))
    say("kubectl apply -k deploy/namespaced")
    testcluster.kubectl("apply", "-k", str(INSTALL), timeout=120)
    try:
        for name in ("agentkube-operator", "agentkube-sandbox-gateway"):
            wait_for(
                testcluster,
                f"deployment {SYSTEM_NS}/{name} to be available",
                deployment_available(testcluster, SYSTEM_NS, name),
                timeout=180,
                namespaces=(SYSTEM_NS,),
            )
        yield agentkube_image
    finally:
        say("uninstalling (namespaces and cluster-wide objects; the CRDs stay)")
        testcluster.kubectl(
            "delete", "namespace", AGENTS_NS, SYSTEM_NS, SANDBOX_NS, "--ignore-not-found",
            "--timeout=180s",
            timeout=200, check=False,
        )  # fmt: skip
        testcluster.kubectl(
            "delete", CLUSTER_KINDS, "-l", INSTALL_LABEL, "--ignore-not-found", check=False
        )
