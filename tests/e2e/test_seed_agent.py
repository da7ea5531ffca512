"""End to end, as a user runs it (the README's "On a cluster"): `kubectl apply -k
deploy/namespaced`, a `Model` for the seed's `llama-3-70b`, the article's manifest verbatim in
`agents`, `kubectl get agents`, then a task sent through `kubectl port-forward` to the agent's
Service, answered by code that ran in a sandbox pod on gVisor on the real node — a pod that is
gone afterwards.

The Model's endpoint is tests/e2e/model_standin.py running as a pod (the LLM is the one part that
cannot run here; the stand-in only relays: it calls `python-interpreter` with the task's code and
quotes the tool's result). Everything else is the real thing: the operator and the sandbox
gateway from the project's image, Services routed by kube-proxy, names resolved by CoreDNS, the
agent's `memory: persistent` volume bound to a PersistentVolume, NetworkPolicies enforced by
kube-router, the gateway's Jobs and warm pods on runsc.

Then the cluster is disturbed and must converge: the operator's pod is deleted and the API
server restarted (the Agent stays Ready, a new task is answered), and the Agent is deleted
(everything it owned goes).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hack.testcluster.realnode import Info

from tests.e2e.conftest import AGENTS_NS, SANDBOX_NS, SYSTEM_NS
from tests.e2e.steps import deployment_available, say, wait_for
from tests.plugins.testcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

HERE = Path(__file__).resolve().parent
SEED = HERE.parents[1] / "examples" / "seed-agent.yaml"
AGENT = "research-agent"
TASK = "Compute the first 10 squares:\n```python\nprint([n * n for n in range(1, 11)])\n```"
ANSWER = "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"
CODE = "n * n for n in range(1, 11)"
STANDIN_PORT = 8000
UID = 65532


def _standin_objects(image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "model-standin"}
    container = {
        "name": "model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/opt/agentkube/bin/python", "/standin/model_standin.py", str(STANDIN_PORT)],
        "ports": [{"name": "http", "containerPort": STANDIN_PORT}],
        "readinessProbe": {"tcpSocket": {"port": STANDIN_PORT}, "periodSeconds": 1},
        "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "code", "mountPath": "/standin", "readOnly": True}],
    }
    pod = {
        "securityContext": {
            "runAsUser": UID,
            "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "code", "configMap": {"name": "model-standin"}}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "model-standin"},
            "data": {"model_standin.py": (HERE / "model_standin.py").read_text()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "model-standin", "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "model-standin"},
            "spec": {"selector": labels, "ports": [{"port": STANDIN_PORT, "targetPort": "http"}]},
        },
    ]


def _model(namespace: str) -> dict[str, Any]:
    """The Model a user adds for the seed's `model: llama-3-70b`: an OpenAI-compatible URL."""
    url = f"http://model-standin.{namespace}.svc.cluster.local:{STANDIN_PORT}/v1"
    return {
        "apiVersion": "ai.openvn/v1",
        "kind": "Model",
        "metadata": {"name": "llama-3-70b"},
        "spec": {"endpoint": {"url": url}},
    }


@dataclass
class PodWatch:
    """`kubectl get pods --watch` in a namespace, every version seen kept."""

    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None

    def start(self, cluster: Cluster, namespace: str) -> None:
        argv = [
            cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "get", "pods", "-n",
            namespace, "--watch", "-o", "json",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.process.stdout:
            buffer += line
            try:
                pod, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            self.seen[pod["metadata"]["name"]] = pod

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.communicate(timeout=10)


def _agent_ready(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "agent", AGENT, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    agent: dict[str, Any] = json.loads(result.stdout)
    conditions = agent.get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return agent if ready else None


def _service_url(cluster: Cluster, namespace: str) -> str:
    service = cluster.kubectl_json("get", "service", AGENT, "-n", namespace)
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"


@contextlib.contextmanager
def port_forward(cluster: Cluster, namespace: str, service: str) -> Iterator[str]:
    """`kubectl port-forward svc/NAME :PORT` (API server → kubelet → pod); yields the local URL."""
    port = cluster.kubectl_json("get", "service", service, "-n", namespace)["spec"]["ports"][0]
    argv = [
        cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n",
        namespace, f"svc/{service}", f":{port['port']}",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 8080
        if "Forwarding from 127.0.0.1:" not in line:
            process.kill()
            _, err = process.communicate(timeout=10)
            pytest.fail(f"kubectl port-forward failed: {line}{err}", pytrace=False)
        yield f"http://127.0.0.1:{line.split('127.0.0.1:', 1)[1].split()[0]}"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _run_task(cluster: Cluster, url: str, namespace: str, timeout: float = 180.0) -> dict[str, Any]:
    """POST the task to the agent's Service (routed by kube-proxy) and wait for its result."""
    with httpx.Client(base_url=url, timeout=10.0) as client:

        def accepted() -> dict[str, Any] | None:
            try:
                response = client.post("/v1/tasks", json={"task": TASK})
            except httpx.TransportError:
                return None
            return dict(response.json()) if response.status_code == 202 else None

        task = wait_for(
            cluster, f"the agent's Service {url} to accept a task", accepted, timeout=60,
            namespaces=(namespace,),
        )  # fmt: skip

        def finished() -> dict[str, Any] | None:
            try:
                view = dict(client.get(f"/v1/tasks/{task['id']}").json())
            except (httpx.TransportError, ValueError):
                return None
            return view if view.get("status") in ("succeeded", "failed") else None

        return wait_for(
            cluster, f"task {task['id']} to finish", finished, timeout=timeout,
            namespaces=(namespace, SANDBOX_NS),
        )  # fmt: skip


def _assert_answered(cluster: Cluster, view: dict[str, Any], namespace: str) -> None:
    output = (view.get("result") or {}).get("output") or ""
    if view.get("status") != "succeeded" or ANSWER not in output:
        logs = cluster.kubectl(
            "logs", "-n", namespace, f"deployment/{AGENT}", "--tail=60", check=False
        )
        gateway = cluster.kubectl(
            "logs", "-n", SYSTEM_NS, "deployment/agentkube-sandbox-gateway", "--tail=30",
            check=False,
        )  # fmt: skip
        pytest.fail(
            f"the task was not answered with {ANSWER}:\n{json.dumps(view, indent=2)}\n"
            f"agent log:\n{logs.stdout}{logs.stderr}\ngateway log:\n{gateway.stdout}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def seed_namespace(testcluster: Cluster, installed: str) -> str:
    """`agents` with the model stand-in, the Model, and the seed manifest, verbatim (the
    install's teardown deletes the namespace)."""
    namespace = AGENTS_NS
    for obj in _standin_objects(installed):
        testcluster.apply(json.dumps(obj), namespace=namespace)
    say(f"kubectl apply -n {namespace}: the Model llama-3-70b")
    testcluster.apply(json.dumps(_model(namespace)), namespace=namespace)
    say(f"kubectl apply -n {namespace} -f examples/seed-agent.yaml")
    testcluster.apply(SEED, namespace=namespace)
    return namespace


def test_the_seed_agent_answers_with_code_run_in_a_gvisor_sandbox_that_is_then_gone(
    testcluster: Cluster, plain_cluster: Info, seed_namespace: str
) -> None:
    ns = seed_namespace
    wait_for(
        testcluster, "deployment model-standin to be available",
        deployment_available(testcluster, ns, "model-standin"), timeout=120, namespaces=(ns,),
    )  # fmt: skip
    began = time.monotonic()
    wait_for(
        testcluster, f"agent {AGENT} to be Ready", lambda: _agent_ready(testcluster, ns),
        timeout=240, namespaces=(ns, SYSTEM_NS),
    )  # fmt: skip
    ready_s = time.monotonic() - began
    claim = testcluster.kubectl_json("get", "pvc", "-n", ns)["items"]
    assert [c["status"]["phase"] for c in claim] == ["Bound"], claim  # memory: persistent

    row = testcluster.kubectl("get", "agents", "-n", ns, "-o", "wide").stdout
    say(f"kubectl get agents -n {ns} -o wide\n{row}")
    assert AGENT in row and "True" in row, row

    watch = PodWatch()
    watch.start(testcluster, SANDBOX_NS)
    try:
        with port_forward(testcluster, ns, AGENT) as url:
            view = _run_task(testcluster, url, ns)
    finally:
        watch.stop()
    say(f"Ready after {ready_s:.1f}s; first task answered after {time.monotonic() - began:.1f}s")
    _assert_answered(testcluster, view, ns)

    # The pod that ran the task's code: a claimed warm pod (the request in its annotation) or
    # a Job's pod (the request in its environment).
    ran = {n: p for n, p in watch.seen.items() if CODE in json.dumps(p)}
    assert ran, f"no sandbox pod received the task's code; seen: {sorted(watch.seen)}"
    for name, pod in ran.items():
        assert pod["spec"].get("runtimeClassName") == "gvisor", (name, pod["spec"])
        assert pod["spec"]["nodeName"] == plain_cluster.name, (name, pod["spec"])

    def gone() -> bool:
        left = testcluster.kubectl("get", "pods", "-n", SANDBOX_NS, "-o", "name").stdout.split()
        return not any(f"pod/{name}" in left for name in ran)

    wait_for(testcluster, "the sandbox pods that ran to be gone", gone, timeout=60,
             namespaces=(SANDBOX_NS,))  # fmt: skip


def test_after_the_operator_and_the_api_server_restart_the_agent_still_answers(
    testcluster: Cluster, seed_namespace: str
) -> None:
    ns = seed_namespace
    wait_for(testcluster, f"agent {AGENT} to be Ready", lambda: _agent_ready(testcluster, ns),
             timeout=240, namespaces=(ns, SYSTEM_NS))  # fmt: skip
    say("deleting the operator's pod, then restarting the API server")
    testcluster.kubectl("delete", "pod", "-n", SYSTEM_NS, "-l",
                        "app.kubernetes.io/name=agentkube-operator", "--wait=false")  # fmt: skip
    testcluster.restart("kube-apiserver")
    wait_for(
        testcluster, "the operator to be available again",
        deployment_available(testcluster, SYSTEM_NS, "agentkube-operator"), timeout=180,
        namespaces=(SYSTEM_NS,),
    )  # fmt: skip
    wait_for(testcluster, f"agent {AGENT} to be Ready again",
             lambda: _agent_ready(testcluster, ns), timeout=120, namespaces=(ns,))  # fmt: skip
    view = _run_task(testcluster, _service_url(testcluster, ns), ns)
    _assert_answered(testcluster, view, ns)


def test_deleting_the_agent_removes_everything_it_owned(
    testcluster: Cluster, seed_namespace: str
) -> None:
    ns = seed_namespace
    kinds = "deployments,services,configmaps,networkpolicies,serviceaccounts,persistentvolumeclaims"
    owned = testcluster.kubectl("get", kinds, "-n", ns, "-l", f"app.kubernetes.io/instance={AGENT}",
                                "-o", "name").stdout.split()  # fmt: skip
    assert owned, "the Agent's children carry no app.kubernetes.io/instance label"
    testcluster.kubectl("delete", "agent", AGENT, "-n", ns, "--timeout=60s")

    def all_gone() -> bool:
        left = testcluster.kubectl("get", kinds, "-n", ns, "-o", "name").stdout.split()
        return not set(owned) & set(left)

    wait_for(testcluster, f"everything {AGENT} owned to be gone ({len(owned)} objects)", all_gone,
             timeout=120, namespaces=(ns,))  # fmt: skip
