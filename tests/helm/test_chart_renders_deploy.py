"""The Helm chart is deploy/, rendered: for each set of values, `helm template` yields exactly
the objects kustomize renders for the matching install (deploy/, deploy/namespaced,
deploy/memory, deploy/webhook), and the values land where they should."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.helm.generate import CHART, DEPLOY, GenerationError, chart_files, key, stale

from agentkube.operator.config import parse_config
from tests.helm.conftest import kustomized, normalised, run_helm, template, values_file

JSON = dict[str, Any]
Objects = dict[tuple[str, str, str], JSON]
OPERATOR = ("Deployment", "agentkube-system", "agentkube-operator")
CONFIG = ("ConfigMap", "agentkube-system", "agentkube-operator")


def assert_same(rendered: Objects, expected: Objects) -> None:
    assert sorted(rendered) == sorted(expected)  # the same kinds/namespaces/names first
    for k, obj in expected.items():
        assert rendered[k] == obj, f"{k} differs"


def operator_args(objects: Objects) -> list[str]:
    args: list[str] = objects[OPERATOR]["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_the_committed_chart_is_what_the_generator_makes_of_deploy() -> None:
    assert stale(CHART, chart_files()) == [], "the chart is stale: run `make helm-chart`"


def test_the_generator_refuses_a_namespaced_install_it_cannot_template(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy, ignore=shutil.ignore_patterns("helm"))
    kustomization = deploy / "namespaced" / "kustomization.yaml"
    text = kustomization.read_text().replace("value: --namespace=agents", "value: --verbose")
    kustomization.write_text(text)
    with pytest.raises(GenerationError) as refused:
        chart_files(deploy)
    assert str(refused.value).startswith(
        "deploy/namespaced changes Deployment agentkube-system/agentkube-operator in a way"
    )


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "namespaced": {"enabled": True},
            "memory": {"enabled": True},
            "webhook": {"enabled": True},
        },
    ],
    ids=["defaults", "everything-on"],
)
def test_helm_lint_finds_nothing(helm: Path, tmp_path: Path, values: JSON) -> None:
    result = run_helm(
        helm, "lint", "--strict", str(CHART), "--values", str(values_file(tmp_path, values))
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_default_values_render_exactly_what_kustomize_renders_for_deploy(
    helm: Path, tmp_path: Path
) -> None:
    rendered = normalised(template(helm, tmp_path))
    assert_same(rendered, normalised(kustomized(DEPLOY)))
    assert ("ClusterRole", "", "agentkube-operator") in rendered  # not an empty comparison


def test_namespaced_values_render_exactly_the_namespaced_install(
    helm: Path, tmp_path: Path
) -> None:
    rendered = normalised(template(helm, tmp_path, {"namespaced": {"enabled": True}}))
    assert_same(rendered, normalised(kustomized(DEPLOY / "namespaced")))
    assert "--namespace=agents" in operator_args(rendered)


def test_the_namespaced_mode_watches_each_namespace_it_is_given(helm: Path, tmp_path: Path) -> None:
    watched = ["team-a", "team-b"]
    rendered = normalised(
        template(helm, tmp_path, {"namespaced": {"enabled": True, "namespaces": watched}})
    )
    namespaced = normalised(kustomized(DEPLOY / "namespaced"))
    expected: Objects = {}
    for (kind, namespace, name), obj in namespaced.items():
        if "agents" not in (namespace, name if kind == "Namespace" else None):
            expected[(kind, namespace, name)] = obj
            continue
        for ns in watched:  # deploy/namespaced's objects for `agents`, once per namespace
            copied = copy.deepcopy(obj)
            copied["metadata"]["name" if kind == "Namespace" else "namespace"] = ns
            expected[key(copied)] = copied
    args = operator_args(expected)
    args[args.index("--namespace=agents") :] = [f"--namespace={ns}" for ns in watched]
    assert_same(rendered, expected)

    existing = {"namespaced": {"enabled": True, "namespaces": watched, "createNamespaces": False}}
    without = normalised(template(helm, tmp_path, existing))
    assert sorted(without) == sorted(
        k for k in expected if k[:2] != ("Namespace", "") or k[2] not in watched
    )


def test_the_namespaced_mode_without_a_namespace_is_refused_in_one_line(
    helm: Path, tmp_path: Path
) -> None:
    values = values_file(tmp_path, {"namespaced": {"enabled": True, "namespaces": []}})
    result = run_helm(helm, "template", str(CHART), "--values", str(values), check=False)
    assert result.returncode != 0
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "namespaced.namespaces: the namespaced mode needs at least one namespace" in error


def test_memory_on_adds_deploy_memory_and_turns_it_on_in_the_operator(
    helm: Path, tmp_path: Path
) -> None:
    rendered = normalised(template(helm, tmp_path, {"memory": {"enabled": True}}))
    expected = normalised(kustomized(DEPLOY)) | normalised(kustomized(DEPLOY / "memory"))
    expected[CONFIG]["data"]["config.yaml"]["memory"] = {}
    assert_same(rendered, expected)
    off = normalised(template(helm, tmp_path, {"memory": {"enabled": False}}))
    assert not [k for k in off if k[1] == "agentkube-memory" or k[2] == "agentkube-memory"]


def test_the_webhook_on_adds_deploy_webhook_with_its_ca(helm: Path, tmp_path: Path) -> None:
    values = {"webhook": {"enabled": True, "caBundle": "Q0EK"}}
    rendered = normalised(template(helm, tmp_path, values))
    expected = normalised(kustomized(DEPLOY)) | normalised(kustomized(DEPLOY / "webhook"))
    (webhook,) = [k for k in expected if k[0] == "MutatingWebhookConfiguration"]
    for hook in expected[webhook]["webhooks"]:
        hook["clientConfig"]["caBundle"] = "Q0EK"
    assert_same(rendered, expected)


def test_images_storage_and_the_operators_pools_are_values(helm: Path, tmp_path: Path) -> None:
    pools = {"spot": {"nodeSelector": {"pool": "cheap"}}, "gpu": {"nodeSelector": {"gpu": "a100"}}}
    values = {
        "image": {"repository": "registry.example.net/agentkube", "tag": "1.2.3",
                  "pullPolicy": "Always"},
        "sandboxImage": "python:3.13-slim",
        "config": {"pools": pools, "tenantPools": ["spot"]},
        "memory": {"enabled": True, "redis": {"image": "redis:8", "storage": "1Gi"},
                   "chroma": {"image": "chroma:2", "storage": "2Gi"}},
        "webhook": {"enabled": True},
    }  # fmt: skip
    rendered = normalised(template(helm, tmp_path, values))
    ours = [
        c for (kind, _, name), o in rendered.items() if kind == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]  # fmt: skip
    assert len(ours) == 3  # operator, gateway, webhook
    assert {c["image"] for c in ours} == {"registry.example.net/agentkube:1.2.3"}
    assert {c["imagePullPolicy"] for c in ours} == {"Always"}
    gateway = rendered[("Deployment", "agentkube-system", "agentkube-sandbox-gateway")]
    assert (
        "--image=python:3.13-slim" in gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    for server, image, size in (("redis", "redis:8", "1Gi"), ("chroma", "chroma:2", "2Gi")):
        spec = rendered[("StatefulSet", "agentkube-memory", f"agentkube-{server}")]["spec"]
        pod = spec["template"]["spec"]
        assert {c["image"] for c in pod.get("initContainers", []) + pod["containers"]} == {image}
        assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == size
    # The operator accepts the configuration Helm wrote: values merged over deploy/'s.
    config = parse_config(rendered[CONFIG]["data"]["config.yaml"], "the chart's config.yaml")
    assert config.agent_image == "registry.example.net/agentkube:1.2.3"
    assert config.pools["spot"].node_selector == {"pool": "cheap"}
    assert config.tenant_pools == ["spot"]
    assert config.sandbox_url == "http://agentkube-sandbox-gateway.agentkube-system.svc:8080"
    assert config.memory is not None

    pinned = normalised(template(helm, tmp_path, {"config": {"agentImage": "agents:9"}}))
    assert yaml.safe_dump(pinned[CONFIG]["data"]["config.yaml"]).startswith("agentImage: agents:9")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"namspaced": {"enabled": True}}, "at '': additional properties 'namspaced' not allowed"),
        ({"memory": {"enabled": "yes"}}, "at '/memory/enabled': got string, want boolean"),
        ({"namespaced": {"namespaces": ["Team_A"]}}, "at '/namespaced/namespaces/0': 'Team_A'"),
    ],
    ids=["misspelt", "not-a-boolean", "not-a-namespace"],
)
def test_bad_values_are_refused_naming_the_value(
    helm: Path, tmp_path: Path, values: JSON, problem: str
) -> None:
    result = run_helm(
        helm, "template", str(CHART), "--values", str(values_file(tmp_path, values)), check=False
    )
    assert result.returncode != 0
    assert any(line.startswith(f"- {problem}") for line in result.stderr.splitlines())
