"""The RAG injection webhook called by the real API server.

``agentkube sidecar webhook`` runs as a process on loopback, with a certificate from its own
throw-away CA (openssl) and the credentials of deploy/webhook's ServiceAccount, so its RBAC is
what it gets. deploy/webhook's MutatingWebhookConfiguration is registered as shipped but for
``clientConfig`` (a loopback URL and that CA), and twice: the API server then calls the webhook
again with the pod the first call changed, which must not get a second proxy.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentkube.api import sidecar_contract as sc
from tests.operator.operator_process import AGENTKUBE, free_port
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WEBHOOK_DIR = DEPLOY / "webhook"
SYSTEM = "agentkube-system"
OPT_IN = {sc.NAMESPACE_OPT_IN_LABEL: sc.NAMESPACE_OPT_IN_VALUE}
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
UPSTREAM = "http://llm.models.svc:8000/v1"
PROXY_URL = "http://127.0.0.1:8081/v1"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, serving certificate, key): a CA of its own signs a certificate for 127.0.0.1."""
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "tls.crt", directory / "tls.key", directory / "tls.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "1",
        "-subj",
        "/CN=rag-webhook-test-ca",
    )
    openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=webhook")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


@pytest.fixture(scope="module")
def webhook_url(
    testcluster: Cluster, agentkube_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The webhook process, registered with the API server; its URL."""
    cluster, directory = testcluster, tmp_path_factory.mktemp("rag-webhook")
    cluster.apply(DEPLOY / "operator" / "namespace.yaml")
    cluster.apply(WEBHOOK_DIR / "rbac.yaml", SYSTEM)
    kubeconfig = cluster.kubeconfig_for_service_account(SYSTEM, "agentkube-rag-webhook")
    ca, cert, key = self_signed(directory)
    port = free_port()
    log = (directory / "webhook.log").open("w")
    process = subprocess.Popen(
        [
            str(AGENTKUBE),
            "sidecar",
            "webhook",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--port",
            str(port),
        ],
        env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_healthy(url, ca, process, directory / "webhook.log")
        cluster.apply(json.dumps(_registration(url, ca)))
        yield url
    finally:
        cluster.kubectl(
            "delete",
            "mutatingwebhookconfiguration",
            "agentkube-rag-injection",
            "--ignore-not-found",
        )
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _registration(url: str, ca: Path) -> dict[str, Any]:
    """deploy/webhook's configuration, pointed at the loopback server, registered twice."""
    shipped = yaml.safe_load((WEBHOOK_DIR / "webhook.yaml").read_text())
    (hook,) = shipped["webhooks"]
    hook["clientConfig"] = {
        "url": f"{url}/inject-rag",
        "caBundle": base64.b64encode(ca.read_bytes()).decode(),
    }
    again = {**copy.deepcopy(hook), "name": "rag-injection-again.ai.openvn"}
    shipped["webhooks"] = [hook, again]
    return dict(shipped)


def _wait_healthy(url: str, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the webhook exited {process.returncode}:\n{log.read_text()}")
        try:
            if (
                httpx.get(
                    f"{url}/healthz", verify=ssl.create_default_context(cafile=ca), timeout=2
                ).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the webhook did not answer /healthz within 60s:\n{log.read_text()}")


def app_pod(name: str, annotations: dict[str, str], containers: int = 1) -> dict[str, Any]:
    """A pod that passes Pod Security ``restricted`` (kwok plays its kubelet)."""
    locked = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": f"app-{i}",
                    "image": "registry.k8s.io/pause:3.10",
                    "env": [{"name": "OPENAI_BASE_URL", "value": "https://api.example.com/v1"}],
                    "securityContext": locked,
                }
                for i in range(containers)
            ]
        },
    }


def create(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    cluster.apply(json.dumps(pod), namespace)
    stored: dict[str, Any] = cluster.kubectl_json(
        "get", "pod", pod["metadata"]["name"], "-n", namespace
    )
    return stored


@pytest.fixture
def opted_in(testcluster: Cluster, webhook_url: str) -> Iterator[str]:
    """A namespace that opted in to injection and enforces Pod Security ``restricted``."""
    name = testcluster.create_namespace("rag-in", labels={**OPT_IN, **RESTRICTED})
    yield name
    testcluster.delete_namespace(name)


def proxies(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [
        c
        for c in [*spec.get("initContainers", []), *spec["containers"]]
        if c["name"] == sc.CONTAINER_NAME
    ]


def base_urls(container: dict[str, Any]) -> list[str | None]:
    return [e.get("value") for e in container.get("env", []) if e["name"] == sc.ENV_OPENAI_BASE_URL]


def test_an_annotated_pod_gets_the_proxy_once_and_its_apps_point_at_it(
    testcluster: Cluster, opted_in: str
) -> None:
    annotations = {
        sc.ANNOTATION_COLLECTION: "handbook",
        sc.ANNOTATION_UPSTREAM: UPSTREAM,
        sc.ANNOTATION_TOP_K: "2",
    }
    stored = create(testcluster, opted_in, app_pod("chat", annotations, containers=2))
    # Two webhook entries called it: still one proxy, one base URL per container.
    (sidecar,) = proxies(stored)
    assert stored["spec"]["initContainers"][0]["name"] == sc.CONTAINER_NAME
    assert sidecar["restartPolicy"] == "Always"
    args = sidecar["args"]
    assert args[args.index("--upstream") + 1] == UPSTREAM
    assert args[args.index("--collection") + 1] == "handbook"
    assert args[args.index("--top-k") + 1] == "2"
    # Admitted under Pod Security restricted, which checks after the mutation.
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    for container in stored["spec"]["containers"]:
        assert base_urls(container) == [PROXY_URL]
    tmp = {"name": "rag-proxy-tmp", "emptyDir": {"sizeLimit": "256Mi"}}
    assert tmp in stored["spec"]["volumes"]
    # The apps keep the pod's ServiceAccount token; the proxy, which needs none, is kept out of it.
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    (tokens,) = {m["name"] for c in stored["spec"]["containers"] for m in c["volumeMounts"]}
    assert tokens.startswith("kube-api-access-")
    at_token_path = [m["name"] for m in sidecar["volumeMounts"] if m["mountPath"] == token_path]
    assert at_token_path == ["rag-proxy-no-token"]


def test_a_copy_of_an_injected_pod_is_not_injected_again(
    testcluster: Cluster, opted_in: str
) -> None:
    annotations = {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_UPSTREAM: UPSTREAM}
    first = create(testcluster, opted_in, app_pod("original", annotations))
    # What `kubectl get -o yaml` shows, re-created under another name; the API server's own
    # token volume and its mounts are added again on creation, so they are dropped.
    spec = {k: first["spec"][k] for k in ("initContainers", "containers", "volumes")}
    own = ("rag-proxy-tmp", "rag-proxy-no-token")
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] in own]
    for container in [*spec["initContainers"], *spec["containers"]]:
        container["volumeMounts"] = [
            m for m in container.get("volumeMounts", []) if m["name"] in own
        ]
    meta = {"name": "copy", "annotations": first["metadata"]["annotations"]}
    copy_of: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    second = create(testcluster, opted_in, copy_of)
    assert len(proxies(second)) == 1
    assert base_urls(second["spec"]["containers"][0]) == [PROXY_URL]
    assert [v["name"] for v in second["spec"]["volumes"]].count("rag-proxy-tmp") == 1


def test_a_model_annotation_makes_the_models_url_the_upstream(
    testcluster: Cluster, opted_in: str
) -> None:
    model = {
        "apiVersion": "ai.openvn/v1",
        "kind": "Model",
        "metadata": {"name": "small"},
        "spec": {"endpoint": {"url": "https://llm.example.com/v1"}},
    }
    testcluster.apply(json.dumps(model), opted_in)
    annotations = {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_MODEL: "small"}
    (sidecar,) = proxies(create(testcluster, opted_in, app_pod("by-model", annotations)))
    assert sidecar["args"][sidecar["args"].index("--upstream") + 1] == "https://llm.example.com/v1"


def test_a_namespace_that_did_not_opt_in_is_untouched(
    testcluster: Cluster, webhook_url: str, cluster_namespace: str
) -> None:
    annotations = {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_UPSTREAM: UPSTREAM}
    stored = create(testcluster, cluster_namespace, app_pod("plain", annotations))
    assert proxies(stored) == [] and "initContainers" not in stored["spec"]
    assert base_urls(stored["spec"]["containers"][0]) == ["https://api.example.com/v1"]


def test_a_pod_without_the_annotation_is_untouched_in_an_opted_in_namespace(
    testcluster: Cluster, opted_in: str
) -> None:
    stored = create(testcluster, opted_in, app_pod("bare", {"team": "search"}))
    assert proxies(stored) == []


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_TOP_K: "3"},
            "annotations ai.openvn/rag-upstream / ai.openvn/rag-model: set exactly one",
        ),
        (
            {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_MODEL: "absent"},
            "annotation ai.openvn/rag-model: no Model 'absent' in namespace",
        ),
    ],
)
def test_a_bad_annotation_refuses_the_pod_naming_it(
    testcluster: Cluster, opted_in: str, annotations: dict[str, str], message: str
) -> None:
    result = testcluster.apply(json.dumps(app_pod("refused", annotations)), opted_in, check=False)
    assert result.returncode != 0
    assert 'admission webhook "rag-injection.ai.openvn" denied the request' in result.stderr
    assert message in result.stderr
    missing = testcluster.kubectl("get", "pod", "refused", "-n", opted_in, check=False)
    assert missing.returncode != 0


def test_the_shipped_install_is_accepted_by_the_api_server(testcluster: Cluster) -> None:
    testcluster.apply(DEPLOY / "operator" / "namespace.yaml")
    result = testcluster.kubectl("apply", "-k", str(WEBHOOK_DIR), "--dry-run=server")
    for kind in ("serviceaccount", "clusterrole", "deployment", "service",
                 "mutatingwebhookconfiguration"):  # fmt: skip
        assert f"{kind}" in result.stdout
    assert "agentkube-rag-injection" in result.stdout
