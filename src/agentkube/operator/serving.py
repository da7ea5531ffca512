"""Models: where an agent's LLM answers from, and the serving objects of in-cluster inference.

A Model with ``endpoint`` is only a reference (no children). A Model with ``serve`` becomes a
Deployment of an OpenAI-compatible server (vLLM by default, llama.cpp selectable) on the GPU
pool, and a Service; agents reach it at ``http://<model>-model.<ns>.svc:<port>/v1``.

:func:`endpoint_for_model` decides which endpoint an Agent's ``spec.model`` means: a Model of
that name in the Agent's namespace, else the operator's default endpoint serving that model id,
else nothing (the Agent reports ``ModelResolved=False`` and recovers when the Model appears).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agentkube.api.models import Model, Serve
from agentkube.api.pod_contract import restricted_container_security, restricted_pod_security
from agentkube.api.quantity import parse_quantity
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import (
    agent_pods,
    metadata,
    model_child_name,
    model_labels,
    model_selector,
    owner_reference,
    stamp,
)
from agentkube.operator.placement import pool_scheduling

JSON = dict[str, Any]
CACHE_DIR = "/cache"


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """What an agent needs to call its model, and what its NetworkPolicy must allow."""

    base_url: str
    model_id: str
    source: str  # "Model" or "DefaultEndpoint"
    api_key_secret: tuple[str, str] | None = None  # (secret name, key)
    serving_pods: dict[str, str] | None = None  # labels of in-cluster serving pods
    port: int = 443


def model_base_url(model: Model, namespace: str, config: OperatorConfig) -> str:
    if model.spec.endpoint is not None:
        return model.spec.endpoint.url
    service = model_child_name(model.metadata.name)
    return f"http://{service}.{namespace}.svc:{config.serving_port}/v1"


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def endpoint_for_model(
    wanted: str, namespace: str, models: Mapping[str, Model], config: OperatorConfig
) -> ResolvedModel | None:
    """The endpoint an Agent's ``spec.model`` refers to, or None when nothing serves it."""
    model = models.get(wanted)
    if model is not None:
        base_url = model_base_url(model, namespace, config)
        if model.spec.serve is not None:
            return ResolvedModel(
                base_url=base_url,
                model_id=model.spec.serve.model,
                source="Model",
                serving_pods=model_selector(model.metadata.name),
                port=config.serving_port,
            )
        endpoint = model.spec.endpoint
        assert endpoint is not None  # the API guarantees exactly one of serve/endpoint
        ref = endpoint.api_key_secret_ref
        return ResolvedModel(
            base_url=base_url,
            model_id=endpoint.model or wanted,
            source="Model",
            api_key_secret=(ref.name, ref.key) if ref else None,
            port=_url_port(base_url),
        )
    default = config.default_endpoint
    if default is None:
        return None
    ref_json = default.api_key_secret_ref
    return ResolvedModel(
        base_url=default.url,
        model_id=wanted,
        source="DefaultEndpoint",
        api_key_secret=(ref_json["name"], ref_json["key"]) if ref_json else None,
        port=_url_port(default.url),
    )


# --------------------------------------------------------------------------- serving objects


def engine_container(serve: Serve, config: OperatorConfig) -> JSON:
    """The inference server container: image, arguments and health probe of the engine."""
    port = str(config.serving_port)
    if serve.engine == "vllm":
        image = serve.image or config.serving_images.vllm
        args = ["--model", serve.model, "--host", "0.0.0.0", "--port", port]  # noqa: S104
        if serve.gpus > 1:
            args += ["--tensor-parallel-size", str(serve.gpus)]
    else:
        image = serve.image or config.serving_images.llama_cpp
        source = ["-m", serve.model] if serve.model.startswith("/") else ["-hf", serve.model]
        args = [*source, "--host", "0.0.0.0", "--port", port]  # noqa: S104
        if serve.gpus > 0:
            args += ["--n-gpu-layers", "999"]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    return {
        "name": "server",
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "args": [*args, *(serve.args or [])],
        "ports": [{"name": "http", "containerPort": config.serving_port, "protocol": "TCP"}],
        "resources": server_resources(serve, config),
        # Model weights take minutes to load: a generous startup probe, then strict liveness.
        "startupProbe": {**probe, "failureThreshold": 180},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        # Pod Security `restricted` and a read-only root, as agents: the engines write only
        # under HOME (the weights and compile caches, a size-limited volume) and /tmp.
        "securityContext": restricted_container_security(config.serving_user_id),
        "env": [
            {"name": "HOME", "value": CACHE_DIR},
            {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        ],
        "volumeMounts": [
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def server_resources(serve: Serve, config: OperatorConfig) -> JSON:
    """The server's requests and limits: ``serve.resources``, cpu and memory it leaves out
    from the configuration (kept consistent with what it gives: a default request never above
    its limit, a default limit never below its request), and the GPUs."""
    given = serve.resources.model_dump(by_alias=True, exclude_none=True) if serve.resources else {}
    requests = {n: str(q) for n, q in given.get("requests", {}).items()}
    limits = {n: str(q) for n, q in given.get("limits", {}).items()}
    defaults = config.serving_resources
    for name in ("cpu", "memory"):
        request, limit = defaults.requests.get(name), defaults.limits.get(name)
        if name not in requests and request is not None:
            cap = limits.get(name)
            fits = cap is None or parse_quantity(request) <= parse_quantity(cap)
            requests[name] = request if fits else cap  # type: ignore[assignment]
        if name not in limits and limit is not None:
            floor = requests.get(name)
            fits = floor is None or parse_quantity(limit) >= parse_quantity(floor)
            limits[name] = limit if fits else floor  # type: ignore[assignment]
    if serve.gpus > 0:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(serve.gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def render_model(model: Model, namespace: str, config: OperatorConfig) -> list[JSON]:
    """The children of a Model: none for an endpoint; for serve a Service, a Deployment and a
    NetworkPolicy that lets only the namespace's agent pods reach the server."""
    serve = model.spec.serve
    if serve is None:
        return []
    name = model.metadata.name
    uid = model.metadata.uid or ""
    owner = owner_reference("Model", name, uid)
    child = model_child_name(name)
    labels = model_labels(name)
    pod_spec: JSON = {
        "containers": [engine_container(serve, config)],
        "volumes": [
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": config.serving_shm_size}},
            {"name": "cache", "emptyDir": {"sizeLimit": config.serving_cache_size}},
            {"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size_limit}},
        ],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(config.serving_user_id),
        **pool_scheduling(config, config.model_pool, serve.placement, namespace),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(child, namespace, labels, owner),
        "spec": {
            "replicas": serve.replicas,
            "selector": {"matchLabels": model_selector(name)},
            # A GPU is never free for a surge pod: replace instead of rolling.
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(child, namespace, labels, owner),
        "spec": {
            "selector": model_selector(name),
            "ports": [
                {
                    "name": "http",
                    "port": config.serving_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }
    # Ingress from agent pods only; egress to DNS and anywhere else (weights come from a model
    # hub) but the cloud metadata address, whose credentials a pulled model must never see.
    anywhere = {"cidr": "0.0.0.0/0", "except": list(config.serving_egress_excluded_cidrs)}
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(child, namespace, labels, owner),
        "spec": {
            "podSelector": {"matchLabels": model_selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": agent_pods()}}],
                    "ports": [{"protocol": "TCP", "port": "http"}],
                }
            ],
            "egress": [config.dns.egress_rule(), {"to": [{"ipBlock": anywhere}]}],
        },
    }
    return [stamp(service), stamp(deployment), stamp(policy)]
