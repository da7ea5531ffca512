"""The operator's configuration: pool profiles, images, peers an agent may talk to.

Everything that differs between clusters lives here, not in the rendering code: node pools are
labelled and tainted differently on GKE, EKS, AKS or bare metal, so a *pool profile* (node
selector, tolerations, affinity) is configuration. The defaults follow the common cloud
conventions: logic agents *prefer* spot nodes (karpenter, GKE, AKS and EKS labels) and tolerate
their taints, so they still run on a cluster without spot nodes; serving Models go to
``accelerator: nvidia-tesla`` nodes and tolerate the NVIDIA device plugin's ``nvidia.com/gpu``
taint. Shared memory (``memory``) is off unless configured: ``memory: {}`` names deploy/memory's
Redis and Chroma, or give the URLs of managed ones. A YAML file (``agentkube operator
--config``) overrides any of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from agentkube import __version__
from agentkube.api.loading import describe
from agentkube.api.models import Toleration
from agentkube.api.pod_contract import OPERATOR_FIELD_MANAGER, SANDBOX_GATEWAY_AUDIENCE
from agentkube.memory.errors import InvalidName
from agentkube.memory.tenancy import DEFAULT_NAMESPACE, namespace_url
from agentkube.operator.errors import OperatorConfigError
from agentkube.operator.sidecars import RagSidecarConfig

JSON = dict[str, Any]


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class PoolProfile(_Config):
    """How pods ask for a node pool: merged into every pod template placed on it."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: JSON | None = Field(None, description="a Kubernetes Affinity object, verbatim")
    runtime_class_name: str | None = None


def _prefer_nodes(label: str, value: str) -> JSON:
    return {
        "weight": 100,
        "preference": {"matchExpressions": [{"key": label, "operator": "In", "values": [value]}]},
    }


SPOT_LABELS = (
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
)


def default_pools() -> dict[str, PoolProfile]:
    spot = PoolProfile(
        tolerations=[
            Toleration(key=k, operator="Equal", value=v, effect="NoSchedule")
            for k, v in SPOT_LABELS[1:3]
        ],
        affinity={
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    _prefer_nodes(k, v) for k, v in SPOT_LABELS
                ]
            }
        },
    )
    gpu = PoolProfile(
        node_selector={"accelerator": "nvidia-tesla"},
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    )
    sandbox = PoolProfile(
        node_selector={"agentkube.openvn/pool": "sandbox"},
        tolerations=[Toleration(key="agentkube.openvn/pool", operator="Equal", value="sandbox")],
    )
    return {"spot": spot, "gpu": gpu, "sandbox": sandbox}


Protocol = Literal["TCP", "UDP"]


def _tcp() -> list[Protocol]:
    return ["TCP"]


class Peer(_Config):
    """Pods an agent may reach: selected by namespace and pod labels, on some ports."""

    namespace_labels: dict[str, str] | None = Field(
        None, description="namespace selector; unset means the agent's own namespace"
    )
    pod_labels: dict[str, str] = Field(default_factory=dict)
    ports: list[int] = Field(..., min_length=1)
    protocols: list[Protocol] = Field(default_factory=_tcp)

    def egress_rule(self) -> JSON:
        """A NetworkPolicy egress rule allowing exactly these pods and ports."""
        to: JSON = {"podSelector": {"matchLabels": dict(self.pod_labels)}}
        if self.namespace_labels is not None:
            to["namespaceSelector"] = {"matchLabels": dict(self.namespace_labels)}
        ports = [
            {"protocol": proto, "port": port} for port in self.ports for proto in self.protocols
        ]
        return {"to": [to], "ports": ports}


def _dns_peer() -> Peer:
    return Peer(
        namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
        pod_labels={"k8s-app": "kube-dns"},
        ports=[53],
        protocols=["UDP", "TCP"],
    )


# deploy/memory: its namespace, the labels of its pods, its Services.
MEMORY_NAMESPACE = "agentkube-memory"
DEFAULT_REDIS_URL = f"redis://agentkube-redis.{MEMORY_NAMESPACE}:6379/0"
DEFAULT_VECTOR_URL = f"http://agentkube-chroma.{MEMORY_NAMESPACE}:8000"


def _memory_pods(name: str, port: int) -> Peer:
    return Peer(
        namespace_labels={"kubernetes.io/metadata.name": MEMORY_NAMESPACE},
        pod_labels={"app.kubernetes.io/name": name},
        ports=[port],
    )


class SecretKeyRef(_Config):
    """One key of a Secret the operator reads (RBAC: ``get`` on that Secret only)."""

    namespace: str = Field(..., pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    name: str = Field(..., pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
    key: str = Field(..., pattern=r"^[-._a-zA-Z0-9]+$")


class RedisServer(_Config):
    """The Redis agents share (sessions, task hand-off); one ACL user per agent namespace."""

    url: str = Field(
        DEFAULT_REDIS_URL,
        description="the server, without credentials: each namespace gets its own user",
    )
    admin_username: str = "default"
    admin_password_secret: SecretKeyRef | None = Field(
        default_factory=lambda: SecretKeyRef(
            namespace=MEMORY_NAMESPACE, name="agentkube-redis", key="password"
        ),
        description="the admin password the operator creates namespace users with; "
        "null for a server without authentication",
    )
    peer: Peer | None = Field(
        default_factory=lambda: _memory_pods("agentkube-redis", 6379),
        description="the server's pods, for agents' egress; null: its port on any address",
    )
    recheck_seconds: float = Field(
        300.0,
        gt=0,
        description="how often a namespace's ACL user is set again, and unused users are swept",
    )

    @field_validator("url")
    @classmethod
    def _server_url(cls, url: str) -> str:
        try:
            namespace_url(url, DEFAULT_NAMESPACE, "-")  # the URL agents will get, or why not
        except InvalidName as e:
            raise ValueError(str(e)) from None  # the message never echoes a credential
        return url


class VectorServer(_Config):
    """The Chroma server holding knowledge collections; one tenant per agent namespace."""

    url: str = Field(DEFAULT_VECTOR_URL, pattern=r"^https?://[^\s/@]+/?$")
    peer: Peer | None = Field(
        default_factory=lambda: _memory_pods("agentkube-chroma", 8000),
        description="the server's pods, for agents' egress; null: its port on any address",
    )


class MemoryServers(_Config):
    """``memory``: shared servers (defaults: deploy/memory's); unset, memory stays in the pod."""

    redis: RedisServer | None = Field(default_factory=RedisServer)
    vector: VectorServer | None = Field(default_factory=VectorServer)


def _sandbox_gateway_peer() -> Peer:
    return Peer(
        namespace_labels={"kubernetes.io/metadata.name": "agentkube-system"},
        pod_labels={
            "app.kubernetes.io/part-of": "agentkube",
            "app.kubernetes.io/component": "sandbox-gateway",
        },
        ports=[8080],
    )


class DefaultEndpoint(_Config):
    """Where a ``spec.model`` that names no Model is served (an OpenAI-compatible base URL)."""

    url: str = Field(..., pattern=r"^https?://[^\s/]+(/\S*)?$")
    api_key_secret_ref: dict[str, str] | None = Field(
        None, description="{name, key} of a Secret in the agent's namespace"
    )


class ResourceDefaults(_Config):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "1Gi"})


def _serving_resources() -> ResourceDefaults:
    return ResourceDefaults(
        requests={"cpu": "2", "memory": "16Gi"}, limits={"cpu": "8", "memory": "32Gi"}
    )


class ServingImages(_Config):
    vllm: str = "vllm/vllm-openai:v0.8.5"
    llama_cpp: str = Field("ghcr.io/ggml-org/llama.cpp:server-cuda", alias="llamaCpp")


class TelemetryConfig(_Config):
    """An OpenTelemetry collector: every pod the operator renders for an Agent exports its
    traces there (the standard ``OTEL_*`` variables); and who may scrape their metrics
    (docs/observability.md)."""

    endpoint: str | None = Field(
        None, pattern=r"^https?://[^\s/]+/?$", description="OTLP/HTTP base URL, e.g. :4318"
    )
    capture_content: bool = Field(
        False, description="put prompts, answers and tool arguments into spans (opt-in)"
    )
    peer: Peer | None = Field(
        None, description="the collector's pods: an egress rule to them in agents' policies"
    )
    scraper: Peer | None = Field(
        None,
        description="the Prometheus pods: an ingress rule from them to agents' metrics ports "
        "(the runtime's and the RAG proxy's; `ports` is ignored)",
    )


class OperatorConfig(_Config):
    """The whole operator configuration; every field has a default."""

    agent_image: str = f"ghcr.io/openvn/agentkube:{__version__}"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    agent_port: int = 8080
    agent_user_id: int = 65532
    serving_images: ServingImages = Field(default_factory=ServingImages)
    serving_port: int = 8000
    serving_user_id: int = 65532
    serving_resources: ResourceDefaults = Field(
        default_factory=_serving_resources,
        description="cpu/memory a Model server gets where serve.resources does not say",
    )
    serving_cache_size: str = Field("200Gi", description="sizeLimit of the weights cache")
    serving_shm_size: str = Field("4Gi", description="sizeLimit of /dev/shm (counts as memory)")
    serving_egress_excluded_cidrs: list[str] = Field(
        default_factory=lambda: ["169.254.169.254/32"],
        description="addresses a Model server may never reach (the cloud metadata service)",
    )
    tmp_size_limit: str = Field("256Mi", description="sizeLimit of every pod's /tmp emptyDir")
    pools: dict[str, PoolProfile] = Field(default_factory=default_pools)
    agent_pool: str = "spot"
    model_pool: str = "gpu"
    tenant_pools: list[str] | None = Field(
        None,
        description="pools a tenant may pick with spec.placement (besides the kind's default "
        "pool); unset means every pool but `sandbox`",
    )
    namespace_pools: dict[str, list[str]] = Field(
        default_factory=dict, description="per-namespace tenantPools, replacing it there"
    )
    default_endpoint: DefaultEndpoint | None = None
    sandbox_url: str | None = Field(
        None, description="the sandbox gateway's URL, passed to agents as AGENTKUBE_SANDBOX_URL"
    )
    sandbox_token_audience: str = Field(
        SANDBOX_GATEWAY_AUDIENCE,
        description="audience of the projected token agents show the sandbox gateway",
    )
    dns: Peer = Field(default_factory=_dns_peer)
    memory: MemoryServers | None = Field(
        None, description="shared memory servers; unset: every pod keeps its memory embedded"
    )
    sandbox_gateway: Peer = Field(default_factory=_sandbox_gateway_peer)
    telemetry: TelemetryConfig | None = Field(
        None, description="an OTLP collector for traces; unset: pods export none"
    )
    web_ports: list[int] = Field(default_factory=lambda: [80, 443])
    web_excluded_cidrs: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]
    )
    agent_resources: ResourceDefaults = Field(default_factory=ResourceDefaults)
    rag_sidecar: RagSidecarConfig = Field(default_factory=RagSidecarConfig)
    persistent_volume_size: str = "1Gi"
    storage_class_name: str | None = None
    field_manager: str = OPERATOR_FIELD_MANAGER
    resync_seconds: float = Field(300.0, gt=0)
    pending_seconds: float = Field(
        15.0, gt=0, description="how often an executor's pending tasks are read (docs/teams.md)"
    )
    incident_seconds: float = Field(
        15.0,
        gt=0,
        description="how often agents' incidents are read and posted as Events "
        "(docs/observability.md)",
    )
    request_timeout_seconds: float = Field(60.0, gt=0)
    max_concurrent_reconciles: int = Field(64, ge=1)
    retry_seconds: float = Field(5.0, gt=0)
    max_retry_seconds: float = Field(
        60.0,
        gt=0,
        description="the longest wait between retries of a failing reconcile: how long an Agent "
        "can stay not Ready after what it waited for (a memory server, the API server) is back",
    )

    @model_validator(mode="after")
    def _pools_exist(self) -> OperatorConfig:
        for field, pool in (("agentPool", self.agent_pool), ("modelPool", self.model_pool)):
            if pool not in self.pools:
                raise ValueError(
                    f"{field} {pool!r} is not a pool profile; define it under pools "
                    f"(known: {', '.join(sorted(self.pools)) or 'none'})"
                )
        offered = [("tenantPools", p) for p in self.tenant_pools or []]
        offered += [
            (f"namespacePools.{ns}", p) for ns, ps in self.namespace_pools.items() for p in ps
        ]
        for field, pool in offered:
            if pool not in self.pools:
                raise ValueError(f"{field} names {pool!r}, which is not a pool profile")
        return self


def load_config(path: Path | str | None) -> OperatorConfig:
    """The configuration in ``path`` (YAML), or the defaults when ``path`` is None."""
    if path is None:
        return OperatorConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OperatorConfigError(f"{path}: no such file; pass an operator config YAML") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise OperatorConfigError(f"{path}: cannot read it as YAML ({e}); fix the file") from e
    return parse_config(data or {}, str(path))


def parse_config(data: object, source: str = "<config>") -> OperatorConfig:
    if not isinstance(data, dict):
        raise OperatorConfigError(f"{source}: expected a mapping of settings")
    try:
        return OperatorConfig.model_validate(data)
    except ValidationError as e:
        raise OperatorConfigError(f"{source}: {describe(e)}") from None
