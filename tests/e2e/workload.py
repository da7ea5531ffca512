"""What the end-to-end tests do to the installed cluster: the model stand-in's objects and the
Model, the agent's readiness, tasks sent to its Service, and the sandbox pods seen meanwhile."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkube.sandbox.kubernetes.rendering import WARM_LABEL
from tests.e2e.conftest import SANDBOX_NS, SYSTEM_NS
from tests.e2e.steps import say, wait_for
from tests.plugins.testcluster import Cluster

HERE = Path(__file__).resolve().parent
SEED = HERE.parents[1] / "examples" / "seed-agent.yaml"
AGENT = "research-agent"
TASK = "Compute the first 10 squares:\n```python\nprint([n * n for n in range(1, 11)])\n```"
ANSWER = "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"
CODE = "n * n for n in range(1, 11)"
STANDIN_PORT = 8000
UID = 65532


def standin_objects(image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "model-standin"}
    container = {
        "name": "model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/opt/agentkube/bin/python", "/standin/model_standin.py", str(STANDIN_PORT)],
        "ports": [{"name": "http", "containerPort": STANDIN_PORT}],
        "readinessProbe": {"tcpSocket": {"port": STANDIN_PORT}, "periodSeconds": 1},
        # Small requests: the one real node's 2 CPUs also hold the install, deploy/memory and
        # the gateway's warm pods (0.5 CPU each).
        "resources": {
            "requests": {"memory": "32Mi", "cpu": "10m"},
            "limits": {"memory": "128Mi", "cpu": "500m"},
        },
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


def model(namespace: str) -> dict[str, Any]:
    """The Model a user adds for the seed's `model: llama-3-70b`: an OpenAI-compatible URL."""
    url = f"http://model-standin.{namespace}.svc.cluster.local:{STANDIN_PORT}/v1"
    return {
        "apiVersion": "ai.openvn/v1",
        "kind": "Model",
        "metadata": {"name": "llama-3-70b"},
        "spec": {"endpoint": {"url": url}},
    }


def apply_seed(cluster: Cluster, image: str, namespace: str) -> None:
    """The model stand-in (from the project's image), the Model, and the seed manifest verbatim."""
    for obj in standin_objects(image):
        cluster.apply(json.dumps(obj), namespace=namespace)
    say(f"kubectl apply -n {namespace}: the Model llama-3-70b")
    cluster.apply(json.dumps(model(namespace)), namespace=namespace)
    say(f"kubectl apply -n {namespace} -f examples/seed-agent.yaml")
    cluster.apply(SEED, namespace=namespace)


@dataclass
class PodWatch:
    """`kubectl get pods --watch` in a namespace, every version seen kept."""

    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None

    def start(self, cluster: Cluster, namespace: str) -> None:
        argv = [
            cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "get", "pods", "-n",
            namespace, "--watch", "-o", "json",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

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
        # Not communicate(): it would close stdout under the reader thread (which then raises);
        # the reader ends at the end of the output of the terminated kubectl.
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def ran(self, code: str) -> dict[str, dict[str, Any]]:
        """The pods seen to run a sandbox execution: a warm pod the gateway claimed (the request
        handed over by `pods/exec`, or written to its annotation) or a pod with ``code`` in its
        request (a Job's environment, a claimed pod's annotation)."""
        return {
            name: pod
            for name, pod in self.seen.items()
            if (pod["metadata"].get("labels") or {}).get(WARM_LABEL) == "claimed"
            or code in json.dumps(pod)
        }


def agent_ready(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "agent", AGENT, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    agent: dict[str, Any] = json.loads(result.stdout)
    conditions = agent.get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return agent if ready else None


def service_url(cluster: Cluster, namespace: str) -> str:
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


def submit(cluster: Cluster, url: str, namespace: str, task: str = TASK) -> str:
    """POST a task to the agent's Service; its id."""
    with httpx.Client(base_url=url, timeout=10.0) as client:

        def accepted() -> str | None:
            try:
                response = client.post("/v1/tasks", json={"task": task})
            except httpx.TransportError:
                return None
            return str(response.json()["id"]) if response.status_code == 202 else None

        return wait_for(
            cluster, f"the agent's Service {url} to accept a task", accepted, timeout=60,
            namespaces=(namespace,),
        )  # fmt: skip


def finished(
    cluster: Cluster, url: str, namespace: str, task_id: str, *, timeout: float = 180.0
) -> dict[str, Any]:
    """Poll GET /v1/tasks/{id} (any replica answers it) until the task ends; its view."""
    with httpx.Client(base_url=url, timeout=10.0) as client:

        def ended() -> dict[str, Any] | None:
            try:
                response = client.get(f"/v1/tasks/{task_id}")
                view = dict(response.json()) if response.status_code == 200 else {}
            except (httpx.TransportError, ValueError):
                return None
            return view if view.get("status") in ("succeeded", "failed") else None

        return wait_for(
            cluster, f"task {task_id} to finish", ended, timeout=timeout,
            namespaces=(namespace, SANDBOX_NS),
        )  # fmt: skip


def run_task(cluster: Cluster, url: str, namespace: str, task: str = TASK) -> dict[str, Any]:
    """A task through the agent's Service, start to end."""
    return finished(cluster, url, namespace, submit(cluster, url, namespace, task))


def assert_answered(cluster: Cluster, view: dict[str, Any], namespace: str) -> None:
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
