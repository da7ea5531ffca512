"""Manifests and waits for pods and Jobs on the test cluster's real node (test helpers)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from hack.testcluster.realnode import Info

from agentkube.sandbox.kubernetes.rendering import PodSettings
from tests.plugins.testcluster import Cluster

RUNTIMES = ("runc", "gvisor")  # runc: no RuntimeClass; gvisor: the RuntimeClass of that name


def real_node_settings(node: Info, namespace: str, runtime: str) -> PodSettings:
    """The gateway's sandbox pods on the real node, on runtime, from the image imported into its
    containerd."""
    return PodSettings(
        namespace=namespace,
        gateway=f"gw-{secrets.token_hex(3)}",
        image=node.images["python"],
        image_pull_policy="Never",  # imported, never pulled (the machine reaches no registry)
        runtime_class_name=None if runtime == "runc" else runtime,
        node_selector=dict(node.node_selector),
        tolerations=[dict(t) for t in node.tolerations],
        ttl_seconds_after_finished=30,
    )


def pod_spec(
    node: Info,
    command: list[str],
    *,
    runtime: str = "runc",
    memory: str | None = None,
    restart: str = "Never",
) -> dict[str, Any]:
    """A one-container pod spec placed on the real node, on runtime (runc or a RuntimeClass)."""
    container: dict[str, Any] = {
        "name": "main",
        "image": node.images["python"],
        "imagePullPolicy": "Never",  # imported into containerd, never pulled
        "command": command,
    }
    if memory is not None:
        container["resources"] = {"limits": {"memory": memory, "cpu": "500m"}}
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": restart,
        "nodeSelector": dict(node.node_selector),
        "tolerations": list(node.tolerations),
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if runtime != "runc":
        spec["runtimeClassName"] = runtime
    return spec


def python(code: str) -> list[str]:
    return ["python3", "-c", code]


def create_job(
    cluster: Cluster,
    namespace: str,
    spec: dict[str, Any],
    *,
    deadline_seconds: int | None = None,
) -> str:
    name = f"job-{secrets.token_hex(3)}"
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }
    if deadline_seconds is not None:
        job["spec"]["activeDeadlineSeconds"] = deadline_seconds
    cluster.apply(json.dumps(job), namespace=namespace)
    return name


def create_pod(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], labels: dict[str, str]
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
    cluster.apply(json.dumps(pod), namespace=namespace)


def job_condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition once it has one."""
    job = cluster.kubectl_json("get", "job", name, "-n", namespace)
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return dict(condition)
    return None


def wait_job(cluster: Cluster, namespace: str, name: str, timeout: float = 90.0) -> dict[str, Any]:
    return cluster.wait_until(
        lambda: job_condition(cluster, namespace, name), f"Job {name} to finish", timeout=timeout
    )


def job_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={name}")
    return list(pods["items"])


def running_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pod = cluster.kubectl_json("get", "pod", name, "-n", namespace)
        return pod if pod["status"].get("phase") == "Running" else None

    return cluster.wait_until(running, f"pod {name} to run", timeout=90.0)


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The main container's `terminated` state, once it has one."""
    for status in pod["status"].get("containerStatuses", []):
        state = status.get("state", {}).get("terminated")
        if state is not None:
            return dict(state)
    return None


def describe(cluster: Cluster, namespace: str) -> str:
    """Pods and events of the namespace, for a failure message."""
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
    return f"pods:\n{pods}\nevents:\n{events}"
