"""An Agent's children, rendered as pure functions of its spec, its model and the configuration.

ServiceAccount (no API rights, no token), ConfigMap (``agent.yaml``, the manifest the runtime
reads), PersistentVolumeClaim (``memory: persistent`` only), Service (so agents find each other
by DNS), NetworkPolicy (see :mod:`networking`) and a Deployment running ``agentkube agent serve``
under the Pod Security ``restricted`` profile. The list is in apply order: whatever the
Deployment's pods mount or use exists before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from agentkube.api import pod_contract as pc
from agentkube.api.models import Agent
from agentkube.api.pod_contract import restricted_container_security, restricted_pod_security
from agentkube.api.teams import same_namespace_targets
from agentkube.operator.config import OperatorConfig
from agentkube.operator.mcpservers import ResolvedServer, with_mcp_servers
from agentkube.operator.memory import memory_env
from agentkube.operator.naming import (
    CONFIG_HASH_ANNOTATION,
    agent_labels,
    agent_selector,
    digest,
    metadata,
    owner_reference,
    stamp,
)
from agentkube.operator.networking import render_network_policy
from agentkube.operator.placement import pool_scheduling
from agentkube.operator.serving import ResolvedModel
from agentkube.operator.sidecars import model_behind_sidecar, rag_sidecar_parts, sidecar_env
from agentkube.operator.telemetry_env import with_telemetry

JSON = dict[str, Any]

# libyaml's emitter when present: rendering runs on every reconcile, and the pure-Python one
# costs more than everything else in it.
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a pod's server must listen on the pod IP


def runtime_manifest(agent: Agent, namespace: str) -> str:
    """``agent.yaml``: the Agent as the runtime should see it (no status, no server metadata)."""
    doc = {
        "apiVersion": agent.api_version,
        "kind": agent.kind,
        "metadata": {"name": agent.metadata.name, "namespace": namespace},
        "spec": agent.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False)


def endpoint(agent: Agent, namespace: str, config: OperatorConfig) -> str:
    return f"http://{agent.metadata.name}.{namespace}.svc:{config.agent_port}"


def model_env(model: ResolvedModel | None) -> list[JSON]:
    if model is None:
        return []
    env: list[JSON] = [
        {"name": pc.ENV_MODEL_BASE_URL, "value": model.base_url},
        {"name": pc.ENV_MODEL_ID, "value": model.model_id},
    ]
    if model.api_key_secret is not None:
        secret, key = model.api_key_secret
        env.append(
            {
                "name": pc.ENV_MODEL_API_KEY,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }
        )
    return env


def runtime_env(agent: Agent, model: ResolvedModel | None, config: OperatorConfig) -> list[JSON]:
    # The namespace selects the memory tenant (key prefix, Redis ACL user, Chroma tenant).
    env: list[JSON] = [
        {"name": pc.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        *model_env(model_behind_sidecar(agent, model, config)),
    ]
    env += sidecar_env(agent, model, config)
    env += memory_env(agent, config)
    if agent.spec.memory == "persistent":
        env.append({"name": pc.ENV_DATA_DIR, "value": pc.DATA_DIR})
    if config.sandbox_url:
        env += [
            {"name": pc.ENV_SANDBOX_URL, "value": config.sandbox_url},
            {"name": pc.ENV_SANDBOX_TOKEN_FILE, "value": pc.SANDBOX_TOKEN_FILE},
        ]
    return env


def container_resources(agent: Agent, config: OperatorConfig) -> JSON:
    # The spec's resources replace the defaults whole: mixing them could put a default request
    # above a user's limit, which the API server rejects.
    if agent.spec.resources is not None:
        given = agent.spec.resources.model_dump(by_alias=True, exclude_none=True)
        return {kind: {k: str(v) for k, v in values.items()} for kind, values in given.items()}
    defaults = config.agent_resources
    return {
        kind: dict(values)
        for kind, values in (("requests", defaults.requests), ("limits", defaults.limits))
        if values
    }


def peer_args(agent: Agent, config: OperatorConfig) -> list[str]:
    """A planner reaches the agents it names over A2A at their Services (same namespace; another
    namespace's are :mod:`agentkube.operator.cross_namespace`'s)."""
    port = config.agent_port
    targets = same_namespace_targets(agent)
    if not targets:
        return []
    peers = [arg for t in targets for arg in ("--peer", f"{t}=http://{t}:{port}")]
    return ["--public-url", f"http://{agent.metadata.name}:{port}", *peers]


def _probe(path: str, **extra: int) -> JSON:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10, **extra}


def runtime_container(agent: Agent, model: ResolvedModel | None, config: OperatorConfig) -> JSON:
    mounts: list[JSON] = [
        {"name": "config", "mountPath": pc.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if agent.spec.memory == "persistent":
        mounts.append({"name": "data", "mountPath": pc.DATA_DIR})
    if config.sandbox_url:
        mounts.append(
            {"name": "sandbox-token", "mountPath": pc.SANDBOX_TOKEN_DIR, "readOnly": True}
        )
    return {
        "name": "agent",
        "image": config.agent_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": [
            "agent",
            "serve",
            f"{pc.CONFIG_DIR}/{pc.CONFIG_FILE}",
            "--host",
            ALL_INTERFACES,
            "--port",
            str(config.agent_port),
            *peer_args(agent, config),
        ],
        "ports": [{"name": "http", "containerPort": config.agent_port, "protocol": "TCP"}],
        "env": runtime_env(agent, model, config),
        "resources": container_resources(agent, config),
        "startupProbe": _probe("/healthz", periodSeconds=2, failureThreshold=60),
        "livenessProbe": _probe("/healthz", failureThreshold=3),
        "readinessProbe": _probe("/readyz", failureThreshold=3),
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }


def sandbox_token_volume(config: OperatorConfig) -> JSON:
    """A token only the sandbox gateway accepts (its audience), minted and rotated by the
    kubelet: the agent still holds no Kubernetes API credentials (docs/gateway-auth.md)."""
    token = {
        "audience": config.sandbox_token_audience,
        "expirationSeconds": 3600,
        "path": "token",
    }
    return {"name": "sandbox-token", "projected": {"sources": [{"serviceAccountToken": token}]}}


def pod_spec(agent: Agent, model: ResolvedModel | None, config: OperatorConfig) -> JSON:
    name = agent.metadata.name
    volumes: list[JSON] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size_limit}},
    ]
    if agent.spec.memory == "persistent":
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": name}})
    if config.sandbox_url:
        volumes.append(sandbox_token_volume(config))
    init_containers, sidecar_volumes = rag_sidecar_parts(agent, model, config)
    volumes += sidecar_volumes
    uid = config.agent_user_id
    spec: JSON = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(uid),
        **({"initContainers": init_containers} if init_containers else {}),
        "containers": [runtime_container(agent, model, config)],
        "volumes": volumes,
        **pool_scheduling(
            config, config.agent_pool, agent.spec.placement, agent.metadata.namespace
        ),
    }
    return with_telemetry(spec, agent, config)


def render_deployment(
    agent: Agent, model: ResolvedModel | None, config: OperatorConfig, meta: JSON, manifest: str
) -> JSON:
    labels = agent_labels(agent.metadata.name)
    persistent = agent.spec.memory == "persistent"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": agent.spec.replicas,
            "selector": {"matchLabels": agent_selector(agent.metadata.name)},
            # A ReadWriteOnce volume cannot be attached to the old and the new pod at once.
            "strategy": {"type": "Recreate"} if persistent else {"type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": labels,
                    # The ConfigMap is not part of the pod spec: its hash makes a change roll out.
                    "annotations": {CONFIG_HASH_ANNOTATION: digest(manifest)},
                },
                "spec": pod_spec(agent, model, config),
            },
        },
    }


def render_agent(
    agent: Agent,
    namespace: str,
    model: ResolvedModel | None,
    config: OperatorConfig,
    *,
    mcp_servers: Sequence[ResolvedServer] = (),
) -> list[JSON]:
    """Every child of an Agent, in apply order; ``mcp_servers`` are the MCPServers its
    ``mcp:<name>`` tools resolved to."""
    name = agent.metadata.name
    owner = owner_reference("Agent", name, agent.metadata.uid or "")
    labels = agent_labels(name)

    def meta() -> JSON:
        return metadata(name, namespace, labels, owner)

    manifest = runtime_manifest(agent, namespace)
    children: list[JSON] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(),
            "data": {pc.CONFIG_FILE: manifest},
        },
    ]
    if agent.spec.memory == "persistent":
        children.append(render_volume_claim(config, meta()))
    children += [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(),
            "spec": {
                "selector": agent_selector(name),
                "ports": [
                    {
                        "name": "http",
                        "port": config.agent_port,
                        "targetPort": "http",
                        "protocol": "TCP",
                    }
                ],
            },
        },
        render_network_policy(agent, namespace, model, config, meta()),
        render_deployment(agent, model, config, meta(), manifest),
    ]
    children = with_mcp_servers(children, agent, mcp_servers)
    return [stamp(child) for child in children]


def render_volume_claim(config: OperatorConfig, meta: JSON) -> JSON:
    spec: JSON = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": config.persistent_volume_size}},
    }
    if config.storage_class_name:
        spec["storageClassName"] = config.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}
