from __future__ import annotations

from typing import Any

import yaml

from agentkube.api.loading import parse_documents
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import CONFIG_HASH_ANNOTATION, HASH_ANNOTATION
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

CONFIG = OperatorConfig()


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in children}


def container(children: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(children)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env(children: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(children)["env"]}


def test_seed_agent_renders_every_child_in_apply_order() -> None:
    kinds = [c["kind"] for c in render_agent(agent(), "default", None, CONFIG)]
    assert kinds == [
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "NetworkPolicy",
        "Deployment",
    ]


def test_every_child_is_controlled_by_the_agent_and_labelled() -> None:
    for child in render_agent(agent(), "team-a", None, CONFIG):
        meta = child["metadata"]
        assert meta["name"] == "research-agent" and meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "ai.openvn/v1",
                "kind": "Agent",
                "name": "research-agent",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "agentkube-operator"
        assert meta["labels"]["ai.openvn/agent"] == "research-agent"
        assert HASH_ANNOTATION in meta["annotations"]


def test_rendering_is_deterministic() -> None:
    assert render_agent(agent(), "ns", None, CONFIG) == render_agent(agent(), "ns", None, CONFIG)


def test_service_account_has_no_token_and_pods_do_not_mount_one() -> None:
    children = by_kind(render_agent(agent(), "ns", None, CONFIG))
    assert children["ServiceAccount"]["automountServiceAccountToken"] is False
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "research-agent"


def test_config_map_holds_the_manifest_the_runtime_reads() -> None:
    children = by_kind(render_agent(agent(), "ns", None, CONFIG))
    (parsed,) = parse_documents(children["ConfigMap"]["data"]["agent.yaml"])
    assert parsed.spec == agent().spec
    assert (parsed.metadata.name, parsed.metadata.namespace) == ("research-agent", "ns")


def test_container_runs_agent_serve_on_the_agreed_port_with_probes() -> None:
    c = container(render_agent(agent(), "ns", None, CONFIG))
    assert c["args"] == [
        "agent", "serve", "/etc/agentkube/agent.yaml", "--host", "0.0.0.0", "--port", "8080"
    ]  # fmt: skip
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_pod_meets_the_restricted_pod_security_profile() -> None:
    children = by_kind(render_agent(agent(), "ns", None, CONFIG))
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    volume_kinds = {k for v in pod["volumes"] for k in v if k != "name"}
    assert volume_kinds <= {"configMap", "emptyDir", "persistentVolumeClaim", "projected"}
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_persistent_memory_gets_a_claim_mounted_at_the_data_dir() -> None:
    children = render_agent(agent(memory="persistent"), "ns", None, CONFIG)
    kinds = by_kind(children)
    assert kinds["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert env(children)["AGENTKUBE_DATA_DIR"] == "/var/lib/agentkube"
    mounts = {m["name"]: m["mountPath"] for m in container(children)["volumeMounts"]}
    assert mounts["data"] == "/var/lib/agentkube"
    assert kinds["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_ephemeral_memory_gets_no_claim() -> None:
    children = render_agent(agent(memory="ephemeral"), "ns", None, CONFIG)
    assert "PersistentVolumeClaim" not in by_kind(children)
    assert "AGENTKUBE_DATA_DIR" not in env(children)
    assert by_kind(children)["Deployment"]["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_storage_size_and_class_come_from_the_configuration() -> None:
    config = OperatorConfig(persistent_volume_size="5Gi", storage_class_name="fast")
    claim = by_kind(render_agent(agent(), "ns", None, config))["PersistentVolumeClaim"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"


def test_a_served_model_gives_its_in_cluster_url_and_id() -> None:
    resolved = endpoint_for_model("llama-3-70b", "ns", {"llama-3-70b": model()}, CONFIG)
    values = env(render_agent(agent(), "ns", resolved, CONFIG))
    assert values["AGENTKUBE_MODEL_BASE_URL"] == "http://llama-3-70b-model.ns.svc:8000/v1"
    assert values["AGENTKUBE_MODEL_ID"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert "AGENTKUBE_MODEL_API_KEY" not in values


def test_an_endpoint_models_api_key_comes_from_its_secret() -> None:
    external = model(
        endpoint={
            "url": "https://api.example.com/v1",
            "model": "gpt-4o",
            "apiKeySecretRef": {"name": "openai", "key": "token"},
        }
    )
    resolved = endpoint_for_model("llama-3-70b", "ns", {"llama-3-70b": external}, CONFIG)
    values = env(render_agent(agent(), "ns", resolved, CONFIG))
    assert values["AGENTKUBE_MODEL_BASE_URL"] == "https://api.example.com/v1"
    assert values["AGENTKUBE_MODEL_ID"] == "gpt-4o"
    assert values["AGENTKUBE_MODEL_API_KEY"] == {"secretKeyRef": {"name": "openai", "key": "token"}}


def test_an_unresolved_model_leaves_the_model_environment_out() -> None:
    values = env(render_agent(agent(), "ns", None, CONFIG))
    assert not any(name.startswith("AGENTKUBE_MODEL_") for name in values)


def test_the_sandbox_url_setting_reaches_the_agent_with_a_gateway_only_token() -> None:
    config = OperatorConfig(sandbox_url="http://sandbox-gateway.agentkube-system.svc:8080")
    children = render_agent(agent(), "ns", None, config)
    values = env(children)
    assert values["AGENTKUBE_SANDBOX_URL"] == "http://sandbox-gateway.agentkube-system.svc:8080"
    token_dir = "/var/run/secrets/agentkube/sandbox-gateway"
    assert values["AGENTKUBE_SANDBOX_TOKEN_FILE"] == f"{token_dir}/token"
    pod = by_kind(children)["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "sandbox-token"]
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "agentkube-sandbox-gateway"
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in container(children)["volumeMounts"]}
    assert mounts["sandbox-token"] == token_dir


def test_without_a_sandbox_url_no_gateway_token_is_mounted() -> None:
    pod = by_kind(render_agent(agent(), "ns", None, CONFIG))["Deployment"]["spec"]["template"][
        "spec"
    ]
    assert all(v["name"] != "sandbox-token" for v in pod["volumes"])


def test_replicas_and_resources_follow_the_spec() -> None:
    custom = agent(replicas=3, resources={"limits": {"cpu": "2", "memory": "2Gi"}})
    children = render_agent(custom, "ns", None, CONFIG)
    assert by_kind(children)["Deployment"]["spec"]["replicas"] == 3
    assert container(children)["resources"] == {"limits": {"cpu": "2", "memory": "2Gi"}}


def test_resources_default_from_the_configuration() -> None:
    assert container(render_agent(agent(), "ns", None, CONFIG))["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }


def test_a_spec_change_changes_the_pod_template_so_it_rolls_out() -> None:
    def template(a: Any) -> Any:
        return by_kind(render_agent(a, "ns", None, CONFIG))["Deployment"]["spec"]["template"]

    before, after = template(agent()), template(agent(system_prompt="Be brief."))
    assert before != after
    assert (
        before["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        != after["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    )


def test_the_service_selects_the_deployments_pods_by_dns_name() -> None:
    children = by_kind(render_agent(agent(), "ns", None, CONFIG))
    selector = children["Service"]["spec"]["selector"]
    labels = children["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert children["Deployment"]["spec"]["selector"]["matchLabels"] == selector
    assert children["Service"]["metadata"]["name"] == "research-agent"


def test_rendered_objects_are_plain_yaml() -> None:
    text = yaml.safe_dump_all(render_agent(agent(), "ns", None, CONFIG))
    assert len(list(yaml.safe_load_all(text))) == 6
