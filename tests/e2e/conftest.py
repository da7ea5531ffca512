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

import contextlib
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
MEMORY_NS = "agentkube-memory"  # deploy/memory's
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


@contextlib.contextmanager
def plain(cluster: Cluster) -> Iterator[Info]:
    """The simulated nodes cordoned and the real node's taints lifted, restored afterwards."""
    node = cluster.real_node
    if node is None:
        pytest.fail(
            f"the end-to-end run needs the real node: {cluster.real_node_unavailable}",
            pytrace=False,
        )
    simulated = [
        n["metadata"]["name"]
        for n in cluster.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    ]
    taints = cluster.kubectl_json("get", "node", node.name)["spec"].get("taints", [])
    say(f"cordoning the simulated nodes ({', '.join(simulated)}), lifting {node.name}'s taints")
    for name in simulated:
        cluster.kubectl("cordon", name)
    cluster.kubectl("patch", "node", node.name, "--type=merge", "-p", '{"spec":{"taints":[]}}')
    try:
        yield node
    finally:
        patch = json.dumps({"spec": {"taints": taints}})
        cluster.kubectl("patch", "node", node.name, "--type=merge", "-p", patch)
        for name in simulated:
            cluster.kubectl("uncordon", name)


@contextlib.contextmanager
def install(cluster: Cluster, node: Info, image: ProjectImage) -> Iterator[str]:
    """`kubectl apply -k deploy/namespaced` from the project's image, uninstalled afterwards;
    yields the image's reference as deploy/ names it."""
    real_node = RealNode(cluster.state_dir)
    agentkube_image, sandbox_image = deploy_images()
    say(f"importing {image.reference} as {agentkube_image}")
    real_node.import_image(image.archive)
    real_node.tag_image(image.reference, full_reference(agentkube_image))
    real_node.tag_image(node.images["python"], full_reference(sandbox_image))
    say("kubectl apply -k deploy/namespaced")
    cluster.kubectl("apply", "-k", str(INSTALL), timeout=120)
    try:
        for name in ("agentkube-operator", "agentkube-sandbox-gateway"):
            wait_for(
                cluster,
                f"deployment {SYSTEM_NS}/{name} to be available",
                deployment_available(cluster, SYSTEM_NS, name),
                timeout=180,
                namespaces=(SYSTEM_NS,),
            )
        yield agentkube_image
    finally:
        say("uninstalling (namespaces and cluster-wide objects; the CRDs stay)")
        cluster.kubectl(
            "delete", "namespace", AGENTS_NS, SYSTEM_NS, SANDBOX_NS, MEMORY_NS,
            "--ignore-not-found", "--timeout=180s", timeout=200, check=False,
        )  # fmt: skip
        cluster.kubectl(
            "delete", CLUSTER_KINDS, "-l", INSTALL_LABEL, "--ignore-not-found", check=False
        )


@pytest.fixture(scope="module")
def plain_cluster(testcluster: Cluster) -> Iterator[Info]:
    with plain(testcluster) as node:
        yield node


@pytest.fixture(scope="module")
def installed(
    testcluster: Cluster, plain_cluster: Info, project_image: ProjectImage
) -> Iterator[str]:
    """agentkube installed by `kubectl apply -k deploy/namespaced`; yields the image reference."""
    with install(testcluster, plain_cluster, project_image) as reference:
        yield reference
