"""deploy/memory: restricted pods, credentials from Secrets, only agent pods let in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.operator.knowledge import labels as knowledge_labels
from agentkube.operator.naming import agent_labels
from tests.plugins.testcluster import Cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "memory"


def rendered() -> list[dict[str, Any]]:
    text = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    return [o for o in yaml.safe_load_all(text) if o]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered() if o["kind"] == kind]


def test_both_servers_are_statefulsets_with_persistent_volumes() -> None:
    sets = {s["metadata"]["name"]: s for s in of_kind("StatefulSet")}
    assert sorted(sets) == ["agentkube-chroma", "agentkube-redis"]
    for workload in sets.values():
        claim = workload["spec"]["volumeClaimTemplates"][0]
        assert claim["metadata"]["name"] == "data"
        assert claim["spec"]["resources"]["requests"]["storage"]


def test_every_container_meets_pod_security_restricted_and_has_resources() -> None:
    for workload in of_kind("StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_redis_runs_with_aof_and_takes_its_password_from_a_secret() -> None:
    config = of_kind("ConfigMap")[0]["data"]["redis.conf"]
    assert "appendonly yes" in config and "appendfsync everysec" in config
    assert "aclfile /data/users.acl" in config
    redis = next(s for s in of_kind("StatefulSet") if s["metadata"]["name"] == "agentkube-redis")
    env = redis["spec"]["template"]["spec"]["initContainers"][0]["env"]
    assert env == [
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "agentkube-redis", "key": "password"}},
        }
    ]
    assert "password" not in json.dumps(of_kind("ConfigMap")).lower().replace("redis_password", "")


def test_only_pods_the_operator_labels_as_agents_and_the_operator_get_in() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    assert policies["agentkube-memory-default-deny"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    labels = agent_labels("any-agent")
    for name in ("agentkube-redis-from-agents", "agentkube-chroma-from-agents"):
        agents, *ingestion, operator = policies[name]["ingress"][0]["from"]
        assert agents["namespaceSelector"] == {}
        assert agents["podSelector"]["matchLabels"].items() <= labels.items()
        assert operator["podSelector"] == {
            "matchLabels": {"app.kubernetes.io/name": "agentkube-operator"}
        }
        # KnowledgeBases' ingestion Jobs reach Chroma (their collections), never Redis.
        if name == "agentkube-redis-from-agents":
            assert ingestion == []
        else:
            (jobs,) = ingestion
            pod = knowledge_labels("any-knowledge-base")
            assert jobs["namespaceSelector"] == {}
            assert jobs["podSelector"]["matchLabels"].items() <= pod.items()


@pytest.mark.cluster
def test_the_real_api_server_admits_the_memory_servers_under_restricted(
    testcluster: Cluster,
) -> None:
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    namespace = testcluster.create_namespace("memory", labels=restricted)
    try:
        objects = [o for o in rendered() if o["kind"] != "Namespace"]
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        applied = testcluster.apply(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        )
        assert "PodSecurity" not in applied.stderr, applied.stderr
        for workload in (o for o in objects if o["kind"] == "StatefulSet"):
            spec = workload["spec"]["template"]["spec"]
            # the claim template's volume, as the StatefulSet controller would add it
            spec["volumes"] = [*spec.get("volumes", []), {"name": "data", "emptyDir": {}}]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": workload["metadata"]["name"] + "-probe",
                    "namespace": namespace,
                },
                "spec": spec,
            }
            dry = testcluster.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(pod)
            )
            assert dry.returncode == 0 and "PodSecurity" not in dry.stderr
    finally:
        testcluster.delete_namespace(namespace)


# ------------------------------------------------- the operator's side must match this one

OPERATOR_DEPLOYMENT = DEPLOY.parent / "operator" / "deployment.yaml"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only, as both sides use) selects ``labels``."""
    if selector is None:
        return False
    assert set(selector) <= {"matchLabels"}, selector
    return dict(selector.get("matchLabels") or {}).items() <= labels.items()


def namespace_labels(namespace: dict[str, Any]) -> dict[str, str]:
    """A Namespace's labels as the API server keeps them (it adds its name as a label)."""
    name = namespace["metadata"]["name"]
    return {**namespace["metadata"].get("labels", {}), "kubernetes.io/metadata.name": name}


def shared_memory_pod() -> tuple[dict[str, str], list[dict[str, Any]]]:
    """An agent pod's labels and its egress, as the operator renders them with memory on."""
    from agentkube.operator.config import parse_config
    from agentkube.operator.rendering import render_agent
    from tests.operator.conftest import agent

    config = parse_config({"memory": {}})
    children = render_agent(agent(memory="persistent"), "team-a", None, config)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    policy = next(c for c in children if c["kind"] == "NetworkPolicy")
    return deployment["spec"]["template"]["metadata"]["labels"], policy["spec"]["egress"]


def test_the_operators_egress_to_memory_selects_exactly_deploy_memorys_servers() -> None:
    from agentkube.operator.config import DEFAULT_REDIS_URL, DEFAULT_VECTOR_URL

    (namespace,) = of_kind("Namespace")
    servers = of_kind("StatefulSet")
    _, egress = shared_memory_pod()
    reached = {}
    for rule in egress:
        for peer in rule["to"]:
            if not selects(peer.get("namespaceSelector"), namespace_labels(namespace)):
                continue
            (server,) = [
                s
                for s in servers
                if selects(peer["podSelector"], s["spec"]["template"]["metadata"]["labels"])
            ]
            container_ports = {
                p["containerPort"]
                for c in server["spec"]["template"]["spec"]["containers"]
                for p in c["ports"]
            }
            assert {p["port"] for p in rule["ports"]} <= container_ports
            reached[server["metadata"]["name"]] = rule["ports"]
    assert sorted(reached) == ["agentkube-chroma", "agentkube-redis"]
    # ... and the URLs agents get are these servers' Services, on the same ports.
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for url, name in (
        (DEFAULT_REDIS_URL, "agentkube-redis"),
        (DEFAULT_VECTOR_URL, "agentkube-chroma"),
    ):
        host, port = url.split("//")[1].split("/")[0].split(":")
        assert host == f"{name}.{namespace['metadata']['name']}"
        service = services[name]
        assert service["metadata"]["namespace"] == namespace["metadata"]["name"]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        assert [{"protocol": "TCP", "port": int(port)}] == reached[name]


def test_deploy_memory_admits_the_agent_pods_and_the_operator_and_no_other_pod() -> None:
    from agentkube.operator.naming import model_labels

    agent_pod, _ = shared_memory_pod()
    operator_pod = yaml.safe_load(OPERATOR_DEPLOYMENT.read_text())["spec"]["template"]
    system = {"kubernetes.io/metadata.name": "agentkube-system"}
    agents_ns = {"kubernetes.io/metadata.name": "team-a"}
    servers = {s["metadata"]["name"]: s for s in of_kind("StatefulSet")}
    for policy in (p for p in of_kind("NetworkPolicy") if p["spec"].get("ingress")):
        spec = policy["spec"]
        (server,) = [
            s for s in servers.values()
            if selects(spec["podSelector"], s["spec"]["template"]["metadata"]["labels"])
        ]  # fmt: skip

        def admitted(labels: dict[str, str], ns: dict[str, str], spec: Any = spec) -> bool:
            return any(
                selects(peer["namespaceSelector"], ns) and selects(peer["podSelector"], labels)
                for rule in spec["ingress"]
                for peer in rule["from"]
            )

        name = server["metadata"]["name"]
        assert admitted(agent_pod, agents_ns), name
        assert admitted(operator_pod["metadata"]["labels"], system), name
        assert not admitted(model_labels("llm"), agents_ns), name  # a model server is no agent
        assert not admitted({"app": "anything"}, agents_ns), name
        assert not admitted(operator_pod["metadata"]["labels"], agents_ns), name  # wrong namespace
