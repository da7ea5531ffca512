"""Every pod agentkube renders or installs writes only to bounded volumes.

The walk covers the operator's rendering of every example (hack/render.py, the same code the
scanners see), the sandbox gateway's Jobs and warm pods, and the install manifests
(``kubectl kustomize`` of deploy/, deploy/namespaced and deploy/memory). An emptyDir without a
``sizeLimit`` lets one pod fill its node's disk (or, memory-backed, its memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hack.helm.generate import kustomize
from hack.render import render_resources

from agentkube.api.loading import load_file
from agentkube.operator.config import OperatorConfig
from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.kubernetes.rendering import PodSettings, render_job, render_warm_pod

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INSTALLS = ("deploy", "deploy/namespaced", "deploy/memory", "deploy/webhook")


def pod_specs(obj: JSON) -> Iterator[JSON]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        yield spec
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    if template:
        yield template["spec"]


def kustomized(path: str) -> list[JSON]:
    return kustomize(ROOT / path)


def rendered_objects() -> list[tuple[str, JSON]]:
    objects = [
        (f"{example.name}: ", obj)
        for example in EXAMPLES
        for obj in render_resources(load_file(example), "agents", OperatorConfig())
    ]
    settings = PodSettings()
    objects.append(("gateway: ", render_job("j", ExecutionRequest(code="1"), settings)))
    objects.append(("gateway: ", render_warm_pod("w", Limits(), settings)))
    objects += [(f"{path}: ", obj) for path in INSTALLS for obj in kustomized(path)]
    return objects


def test_the_walk_sees_every_kind_of_pod() -> None:
    names = {
        o["metadata"]["name"] for _, o in rendered_objects() if any(True for _ in pod_specs(o))
    }
    expected = {"research-agent", "llama-3-70b-model", "agentkube-operator"}
    assert expected | {"agentkube-sandbox-gateway", "j", "w", "agentkube-redis"} <= names


def test_every_empty_dir_has_a_size_limit() -> None:
    unbounded = [
        f"{where}{obj['kind']} {obj['metadata']['name']} volume {volume['name']}"
        for where, obj in rendered_objects()
        for pod in pod_specs(obj)
        for volume in pod.get("volumes") or []
        if "emptyDir" in volume and not volume["emptyDir"].get("sizeLimit")
    ]
    assert unbounded == []
