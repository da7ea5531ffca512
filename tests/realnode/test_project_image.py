"""The project's image (hack/image/build.sh, no Docker) runs the seed agent in a pod on the real
node, as a user's cluster would: imported into the node's containerd, Pod Security
`restricted`, uid 65532, a read-only root, the manifest from a ConfigMap.

The pod runs the image's ENTRYPOINT (`agentkube`) with `run /etc/agentkube/agent.yaml --task …`
and no model endpoint, so the offline model answers (as `make demo` does). Its python-interpreter
goes where an agent pod's always goes, to a sandbox gateway (`AGENTKUBE_SANDBOX_URL`, a projected
token for the gateway's audience): a restricted pod has neither the user namespaces nor the
cgroups bubblewrap needs. The gateway here is the real app served by the test on the node's IP,
its Kubernetes backend running each execution as a Job on the real node on gVisor; so the
answer in the pod's log was computed by code the image's agent sent through the whole path.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hack.testcluster import nodeconfig
from hack.testcluster.realnode import Info, RealNode

from agentkube.api import pod_contract as pc
from agentkube.gateway.app import create_app
from agentkube.gateway.auth import CachingAuthenticator, TokenReviewAuthenticator
from agentkube.gateway.building import kube_client
from agentkube.sandbox.kubernetes import KubernetesSandbox
from tests.plugins.project_image import ProjectImage
from tests.plugins.testcluster import Cluster
from tests.realnode.pods import describe, real_node_settings, terminated
from tests.standins.serving import serve

pytestmark = pytest.mark.cluster
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-agent.yaml"
TASK = "Compute the first 10 squares:\n```python\nprint([n * n for n in range(1, 11)])\n```"
ANSWER = "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
UID = 65532


@pytest.fixture(scope="session")
def imported_image(testcluster: Cluster, project_image: ProjectImage) -> str:
    """The project's image, imported into the real node's containerd; its reference."""
    if testcluster.real_node is None:
        pytest.fail(f"no real node: {testcluster.real_node_unavailable}", pytrace=False)
    RealNode(testcluster.state_dir).import_image(project_image.archive)
    return project_image.reference


@pytest.fixture
def gateway_url(testcluster: Cluster, real_node: Info) -> Iterator[str]:
    """A sandbox gateway the real node's pods reach (on the node's IP), running executions as
    Jobs on that node on gVisor. It acts with the admin kubeconfig: its own RBAC is
    tests/gateway/test_gateway_in_cluster.py's subject, not this test's."""
    sandbox_ns = testcluster.create_namespace("sbx-image", labels=RESTRICTED)
    settings = real_node_settings(real_node, sandbox_ns, "gvisor")
    client = kube_client(testcluster.kubeconfig)  # used only on the server's event loop
    app = create_app(
        KubernetesSandbox(client, settings),
        CachingAuthenticator(
            TokenReviewAuthenticator(client, audiences=(pc.SANDBOX_GATEWAY_AUDIENCE,))
        ),
        kube_client=client,
    )
    try:
        with serve(app, host=nodeconfig.NODE_IP) as url:
            yield url
    finally:
        testcluster.delete_namespace(sandbox_ns)


def _agent_pod(node: Info, image: str, gateway: str, account: str) -> dict[str, Any]:
    token_volume = {
        "name": "sandbox-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": pc.SANDBOX_GATEWAY_AUDIENCE,
                        "expirationSeconds": 600,
                        "path": "token",
                    }
                }
            ]
        },
    }
    container = {
        "name": "agent",
        "image": image,
        "imagePullPolicy": "Never",  # imported, never pulled
        "args": [
            "run",
            f"{pc.CONFIG_DIR}/{pc.CONFIG_FILE}",
            "--task",
            TASK,
        ],  # ENTRYPOINT agentkube
        "env": [{"name": pc.ENV_SANDBOX_URL, "value": gateway}],
        "securityContext": pc.restricted_container_security(UID),
        "resources": {"limits": {"memory": "1Gi", "cpu": "1"}},
        "volumeMounts": [
            {"name": "config", "mountPath": pc.CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": pc.DATA_DIR},  # AGENTKUBE_DATA_DIR, the image's HOME
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "sandbox-token", "mountPath": pc.SANDBOX_TOKEN_DIR, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"seed-{secrets.token_hex(3)}"},
        "spec": {
            "serviceAccountName": account,
            "automountServiceAccountToken": False,
            "securityContext": pc.restricted_pod_security(UID),
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": "seed-agent"}},
                {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                token_volume,
            ],
            "restartPolicy": "Never",
            "nodeSelector": dict(node.node_selector),
            "tolerations": list(node.tolerations),
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": False,
        },
    }


def test_the_seed_agent_runs_from_the_project_image_and_answers_with_computed_code(
    testcluster: Cluster, real_node: Info, imported_image: str, gateway_url: str
) -> None:
    namespace = testcluster.create_namespace("seed-image", labels=RESTRICTED)
    try:
        testcluster.kubectl("create", "serviceaccount", "seed", "-n", namespace)
        testcluster.kubectl(
            "create", "configmap", "seed-agent", f"--from-file={pc.CONFIG_FILE}={SEED}",
            "-n", namespace,
        )  # fmt: skip
        pod = _agent_pod(real_node, imported_image, gateway_url, "seed")
        name = pod["metadata"]["name"]
        testcluster.apply(json.dumps(pod), namespace=namespace)

        def finished() -> dict[str, Any] | None:
            # The container's end, then the pod's phase (the kubelet writes them in turn).
            current = testcluster.kubectl_json("get", "pod", name, "-n", namespace)
            ended = current["status"].get("phase") in ("Succeeded", "Failed")
            return current if ended and terminated(current) is not None else None

        done = testcluster.wait_until(finished, f"pod {name} to finish", timeout=240)
        log = testcluster.kubectl("logs", name, "-n", namespace, check=False)
        context = f"log:\n{log.stdout}{log.stderr}\n{describe(testcluster, namespace)}"
        assert done["status"]["phase"] == "Succeeded", context
        assert done["spec"]["nodeName"] == real_node.name
        assert ANSWER in log.stdout, context
    finally:
        testcluster.delete_namespace(namespace)
