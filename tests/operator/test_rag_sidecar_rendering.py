"""An Agent with spec.rag: the RAG proxy rendered as a native sidecar of its pod (pure)."""

from __future__ import annotations

from typing import Any

from agentkube.api import sidecar_contract as sc
from agentkube.api.pod_contract import ENV_NAMESPACE
from agentkube.operator.config import OperatorConfig, parse_config
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

CONFIG = OperatorConfig()
RAG = {"collection": "handbook", "topK": 3}


def pod(children: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(c for c in children if c["kind"] == "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def rendered(config: OperatorConfig = CONFIG, **spec: Any) -> dict[str, Any]:
    resolved = endpoint_for_model("llama-3-70b", "ns", {"llama-3-70b": model()}, config)
    return pod(render_agent(agent(**spec), "ns", resolved, config))


def test_the_proxy_is_a_native_sidecar_in_front_of_the_agents_model() -> None:
    spec = rendered(rag=RAG)
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "rag-proxy" and sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == CONFIG.agent_image
    args = sidecar["args"]
    assert args[:3] == ["sidecar", "rag", "--upstream"]
    assert args[3] == "http://llama-3-70b-model.ns.svc:8000/v1"  # the Agent's Model
    assert args[args.index("--collection") + 1] == "handbook"
    assert args[args.index("--top-k") + 1] == "3"
    assert "--vector-url" not in args  # no memory server configured: see test_memory_wiring
    agent_env = env_of(spec["containers"][0])
    assert agent_env["AGENTKUBE_MODEL_BASE_URL"] == "http://127.0.0.1:8081/v1"
    assert agent_env[sc.ENV_RAG_SIDECAR] == "http://127.0.0.1:8081"
    assert agent_env["AGENTKUBE_MODEL_ID"] == "meta-llama/Meta-Llama-3-70B-Instruct"


def test_the_sidecar_is_locked_down_like_the_agent() -> None:
    spec = rendered(rag=RAG)
    sidecar, runtime = spec["initContainers"][0], spec["containers"][0]
    assert sidecar["securityContext"] == runtime["securityContext"]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["resources"]["limits"]["memory"] == "1Gi"
    assert {"name": "rag-proxy-tmp", "mountPath": "/tmp"} in sidecar["volumeMounts"]
    assert {"name": "rag-proxy-tmp", "emptyDir": {"sizeLimit": "256Mi"}} in spec["volumes"]
    assert "automountServiceAccountToken" in spec and spec["automountServiceAccountToken"] is False
    # The memory tenant is the Agent's namespace, from the downward API.
    assert env_of(sidecar)[ENV_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert sc.ENV_MEMORY_NAMESPACE == ENV_NAMESPACE
    # Started and ready before the agent container starts.
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "rag"}


def test_an_agent_without_rag_or_without_a_model_gets_no_sidecar() -> None:
    assert "initContainers" not in rendered()
    unresolved = pod(render_agent(agent(rag=RAG), "ns", None, CONFIG))
    assert "initContainers" not in unresolved
    assert sc.ENV_RAG_SIDECAR not in env_of(unresolved["containers"][0])


def test_the_operator_configuration_sets_the_sidecars_store_port_and_policy() -> None:
    config = parse_config(
        {
            "ragSidecar": {
                "vectorUrl": "http://chroma.mem:8000",
                "port": 9090,
                "failClosed": True,
                "image": "example/rag:1",
            }
        }
    )
    spec = rendered(config, rag=RAG)
    sidecar = spec["initContainers"][0]
    assert sidecar["image"] == "example/rag:1"
    assert sidecar["args"][-1] == "--fail-closed"
    assert "http://chroma.mem:8000" in sidecar["args"] and "9090" in sidecar["args"]
    assert env_of(spec["containers"][0])["AGENTKUBE_MODEL_BASE_URL"] == "http://127.0.0.1:9090/v1"
