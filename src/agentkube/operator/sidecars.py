"""The RAG proxy as a native sidecar of an Agent's pod (pure rendering).

An Agent with ``spec.rag`` and a resolved model gets ``agentkube sidecar rag`` as an init
container with ``restartPolicy: Always`` — a native sidecar: it starts, and passes its startup
probe, before the agent container starts, and it outlives it. The agent's model URL becomes the
sidecar on localhost (``AGENTKUBE_RAG_SIDECAR`` tells the runtime not to enrich again); the
sidecar's upstream is the Agent's model, and it forwards the agent's ``Authorization`` header, so
it holds no model key. It runs under the same ``restricted`` security context as the agent (its
own uid, read-only root, no capabilities, an emptyDir ``/tmp``). It listens on the pod's
interfaces so the kubelet can probe it; the Agent's NetworkPolicy admits ingress to the agent's
port only, so no other pod reaches it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from agentkube.api import sidecar_contract as sc
from agentkube.api.models import Agent
from agentkube.api.pod_contract import restricted_container_security
from agentkube.operator.memory import rag_vector_url

if TYPE_CHECKING:  # config.py imports this module: no import cycle at run time
    from agentkube.operator.config import OperatorConfig
    from agentkube.operator.serving import ResolvedModel

JSON = dict[str, Any]

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - probed by the kubelet; the NetworkPolicy keeps others out
TMP_VOLUME = "rag-proxy-tmp"


class RagSidecarConfig(BaseModel):
    """``ragSidecar`` in the operator configuration."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    image: str | None = Field(None, description="the proxy's image; the agent image by default")
    port: int = Field(sc.DEFAULT_PORT, ge=1, le=65535)
    vector_url: str | None = Field(
        None, description="the Chroma server the proxy reads; default: memory.vector.url"
    )
    fail_closed: bool = False
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "50m", "memory": "256Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "1Gi"})


def sidecar_applies(agent: Agent, model: ResolvedModel | None) -> bool:
    """A proxy needs an upstream: without a resolved model the agent runs offline, unproxied."""
    return agent.spec.rag is not None and model is not None


def local_url(config: OperatorConfig) -> str:
    return f"http://127.0.0.1:{config.rag_sidecar.port}"


def model_behind_sidecar(
    agent: Agent, model: ResolvedModel | None, config: OperatorConfig
) -> ResolvedModel | None:
    """The model as the agent container sees it: the sidecar on localhost when there is one."""
    if model is None or not sidecar_applies(agent, model):
        return model
    return replace(model, base_url=f"{local_url(config)}/v1")


def sidecar_env(agent: Agent, model: ResolvedModel | None, config: OperatorConfig) -> list[JSON]:
    """What the agent container is told about its sidecar."""
    if not sidecar_applies(agent, model):
        return []
    return [{"name": sc.ENV_RAG_SIDECAR, "value": local_url(config)}]


def _probe(path: str, **extra: int) -> JSON:
    return {"httpGet": {"path": path, "port": "rag"}, "periodSeconds": 10, **extra}


def rag_sidecar_container(
    agent: Agent, model: ResolvedModel | None, config: OperatorConfig
) -> JSON | None:
    """The native sidecar for ``agent``'s pod, or None when it has none."""
    rag = agent.spec.rag
    if rag is None or model is None:
        return None
    return proxy_container(
        upstream=model.base_url, collection=rag.collection, top_k=rag.top_k, config=config
    )


def proxy_container(
    *,
    upstream: str,
    collection: str,
    top_k: int,
    config: OperatorConfig,
    user_id: int | None = None,
) -> JSON:
    """The proxy as a native sidecar in front of ``upstream``: the one rendering that agent
    pods (the operator) and any annotated pod (the injection webhook) get. ``user_id`` pins
    the uid where the pod itself may not set one."""
    own = config.rag_sidecar
    args = sc.proxy_args(
        upstream=upstream,
        collections=[collection],
        top_k=top_k,
        host=ALL_INTERFACES,
        port=own.port,
        vector_url=rag_vector_url(config),
    )
    if own.fail_closed:
        args.append("--fail-closed")
    resources = {k: dict(v) for k, v in (("requests", own.requests), ("limits", own.limits)) if v}
    return {
        "name": sc.CONTAINER_NAME,
        "image": own.image or config.agent_image,
        "imagePullPolicy": config.image_pull_policy,
        "restartPolicy": "Always",
        "args": args,
        "ports": [{"name": "rag", "containerPort": own.port, "protocol": "TCP"}],
        "env": [
            # The memory tenant is the pod's namespace (collections of others stay unseen).
            {
                "name": sc.ENV_MEMORY_NAMESPACE,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": resources,
        # The app starts only once this passes: its first request finds the proxy.
        "startupProbe": _probe("/healthz", periodSeconds=1, failureThreshold=120),
        "livenessProbe": _probe("/healthz", failureThreshold=3),
        "readinessProbe": _probe("/readyz", failureThreshold=3),
        "securityContext": restricted_container_security(user_id),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }


def proxy_volume(config: OperatorConfig) -> JSON:
    """The proxy's writable ``/tmp`` (its root filesystem is read-only), size-limited."""
    return {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": config.tmp_size_limit}}


def rag_sidecar_parts(
    agent: Agent, model: ResolvedModel | None, config: OperatorConfig
) -> tuple[list[JSON], list[JSON]]:
    """The init containers and the volumes the sidecar adds to the pod (both empty without)."""
    container = rag_sidecar_container(agent, model, config)
    if container is None:
        return [], []
    return [container], [proxy_volume(config)]
