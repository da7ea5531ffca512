from __future__ import annotations

from typing import Any

from agentkube.operator.config import DefaultEndpoint, OperatorConfig
from agentkube.operator.naming import MAX_NAME, bounded_name
from agentkube.operator.serving import endpoint_for_model, render_model
from tests.operator.conftest import model

CONFIG = OperatorConfig()


def deployment(m: Any, config: OperatorConfig = CONFIG) -> dict[str, Any]:
    (svc, dep, policy) = render_model(m, "ns", config)
    assert (svc["kind"], policy["kind"]) == ("Service", "NetworkPolicy")
    return dep


def test_only_agent_pods_may_reach_a_serving_model() -> None:
    (_, dep, policy) = render_model(model(), "ns", CONFIG)
    spec = policy["spec"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "agent"}}}
    ]
    (server,) = dep["spec"]["template"]["spec"]["containers"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert {"name": "http", "containerPort": CONFIG.serving_port, "protocol": "TCP"} in server[
        "ports"
    ]
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "Model"


def test_a_serving_model_runs_vllm_on_the_gpu_pool() -> None:
    dep = deployment(model())
    pod = dep["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["image"].startswith("vllm/vllm-openai:")
    assert server["args"][:2] == ["--model", "meta-llama/Meta-Llama-3-70B-Instruct"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia-tesla"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert server["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert dep["metadata"]["name"] == "llama-3-70b-model"
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Model"


def test_llama_cpp_is_selectable_and_loads_from_hugging_face_or_a_path() -> None:
    hf = deployment(model(serve={"engine": "llama-cpp", "model": "org/repo-GGUF"}))
    server = hf["spec"]["template"]["spec"]["containers"][0]
    assert "llama.cpp" in server["image"]
    assert server["args"][:2] == ["-hf", "org/repo-GGUF"]
    local = deployment(model(serve={"engine": "llama-cpp", "model": "/models/m.gguf", "gpus": 0}))
    server = local["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][:2] == ["-m", "/models/m.gguf"]
    assert "nvidia.com/gpu" not in server["resources"].get("limits", {})


def test_several_gpus_shard_the_model() -> None:
    server = deployment(model(serve={"model": "m", "gpus": 4}))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert server["args"][-2:] == ["--tensor-parallel-size", "4"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_an_endpoint_model_has_no_children() -> None:
    assert render_model(model(endpoint={"url": "https://api.example.com/v1"}), "ns", CONFIG) == []


def test_the_serving_image_and_args_can_be_overridden() -> None:
    dep = deployment(model(serve={"model": "m", "image": "my/vllm:1", "args": ["--dtype", "half"]}))
    server = dep["spec"]["template"]["spec"]["containers"][0]
    assert server["image"] == "my/vllm:1" and server["args"][-2:] == ["--dtype", "half"]


def test_a_model_name_unknown_to_the_namespace_resolves_to_nothing_without_a_default() -> None:
    assert endpoint_for_model("llama-3-70b", "ns", {}, CONFIG) is None


def test_the_default_endpoint_serves_model_ids_that_name_no_model() -> None:
    config = OperatorConfig(default_endpoint=DefaultEndpoint(url="http://llm.example:8000/v1"))
    resolved = endpoint_for_model("llama-3-70b", "ns", {}, config)
    assert resolved is not None
    assert (resolved.base_url, resolved.model_id, resolved.source) == (
        "http://llm.example:8000/v1",
        "llama-3-70b",
        "DefaultEndpoint",
    )
    assert resolved.port == 8000


def test_long_names_are_shortened_to_a_dns_label_without_colliding() -> None:
    a, b = "a" * 60 + "xyz", "a" * 60 + "xyw"
    assert len(bounded_name(a, "-model")) <= MAX_NAME
    assert bounded_name(a, "-model") != bounded_name(b, "-model")
    assert bounded_name("short", "-model") == "short-model"


def test_serving_pods_meet_the_restricted_pod_security_profile() -> None:
    pod = deployment(model())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["HF_HOME"].startswith("/cache")


def test_only_serving_objects_this_model_controls_are_stale() -> None:
    from agentkube.operator.cache import Cache
    from agentkube.operator.writing import stale_children

    owner = {"metadata": {"name": "llama-3-70b", "uid": "uid-m"}}
    cache = Cache()
    for kind, uid in (("Deployment", "uid-m"), ("Service", "someone-else")):
        cache.put(
            {
                "kind": kind,
                "metadata": {
                    "name": "llama-3-70b-model",
                    "namespace": "ns",
                    "ownerReferences": [{"uid": uid, "controller": True}],
                },
            }
        )
    assert stale_children(owner, "ns", set(), cache) == [("Deployment", "llama-3-70b-model")]
    rendered = {("Deployment", "llama-3-70b-model")}
    assert stale_children(owner, "ns", rendered, cache) == []


def test_the_model_server_egress_reaches_dns_and_anywhere_but_the_cloud_metadata_address() -> None:
    (_, _, policy) = render_model(model(), "ns", CONFIG)
    dns, anywhere = policy["spec"]["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert anywhere == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]
    }


def test_the_model_server_has_cpu_and_memory_requests_and_limits_by_default() -> None:
    server = deployment(model())["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"] == {
        "requests": {"cpu": "2", "memory": "16Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
    }


def test_defaults_fill_what_serve_resources_leaves_out_without_contradicting_it() -> None:
    given = {"requests": {"memory": "64Gi"}, "limits": {"cpu": "1"}}
    server = deployment(model(serve={"model": "m", "gpus": 0, "resources": given}))["spec"][
        "template"
    ]["spec"]["containers"][0]
    # A default memory limit below the given request is raised to it; a default cpu request
    # above the given limit is lowered to it (the API server refuses request > limit).
    assert server["resources"] == {
        "requests": {"memory": "64Gi", "cpu": "1"},
        "limits": {"cpu": "1", "memory": "64Gi"},
    }


def test_the_model_server_root_is_read_only_and_its_writable_volumes_are_bounded() -> None:
    pod = deployment(model())["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["runAsUser"] == CONFIG.agent_user_id == 65532  # like agents
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v["emptyDir"] for v in pod["volumes"]}
    assert volumes[mounts["/cache"]] == {"sizeLimit": "200Gi"}
    assert volumes[mounts["/tmp"]] == {"sizeLimit": "256Mi"}
    assert volumes[mounts["/dev/shm"]] == {"medium": "Memory", "sizeLimit": "4Gi"}
