"""The ``ai.openvn/v1`` API: typed models of the ``Agent`` and ``Model`` kinds.

These models are the one source of truth: the local runtime validates manifests with them, and
:mod:`agentkube.api.crds` generates the CustomResourceDefinitions from their JSON schema, so the
API server and the embedded mode accept exactly the same objects. Python names are snake_case;
the wire (YAML/JSON) uses the Kubernetes camelCase aliases.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from agentkube.api.quantity import QUANTITY_PATTERN, parse_quantity

GROUP = "ai.openvn"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

BUILTIN_TOOLS = ("python-interpreter", "web-browser")
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
TOOL_PATTERN = rf"^(python-interpreter|web-browser|agent:{DNS_LABEL}(\.{DNS_LABEL})?|mcp:\S+)$"


class _Wire(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected, and no lax
    coercion (``replicas: '5'`` is refused, as the API server refuses it)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )


def _check_quantity(value: int | str) -> int | str:
    parse_quantity(value)  # raises ValueError naming the accepted forms
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    Field(
        json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN},
    ),
]


# --------------------------------------------------------------------------- metadata


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata agentkube reads; the rest passes through."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(..., max_length=63)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        # Agents become Services, so their names must be DNS labels.
        if not re.fullmatch(DNS_LABEL, name):
            raise ValueError(
                f"{name!r} is not a DNS label: use lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return name


# --------------------------------------------------------------------------- shared parts


class ResourceList(_Wire):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Wire):
    """Compute resources of the agent's runtime container."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None


class Toleration(_Wire):
    """A Kubernetes toleration (the operator's pool profiles use the same model)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Placement(_Wire):
    """Where the agent's pods run: a pool profile of the operator, optionally refined."""

    pool: str | None = Field(
        None,
        pattern=rf"^{DNS_LABEL}$",
        description="pool profile from the operator configuration (default: the CPU/spot pool)",
    )
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None


class SandboxLimits(_Wire):
    """Limits of each tool execution; defaults are 0.5 CPU, 128Mi, 30 s."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    timeout_seconds: int | None = Field(None, ge=1, le=3600)
    pids: int | None = Field(None, ge=4, le=4096)


class Rag(_Wire):
    """Retrieval-augmented generation through the sidecar."""

    # 3+: the shortest name a knowledge collection may have (agentkube.memory.vectors).
    collection: str = Field(..., min_length=3, max_length=63, pattern=rf"^{DNS_LABEL}$")
    top_k: int = Field(4, ge=1, le=50)


class Condition(_Wire):
    """A standard Kubernetes status condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = Field(None, strict=False)  # RFC 3339 text on the wire
    observed_generation: int | None = None


class Autoscale(_Wire):
    """An executor's replicas follow its queue (KEDA, docs/teams.md): one replica per
    ``lagTarget`` tasks waiting, between ``minReplicas`` (0: scale to zero) and ``maxReplicas``."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(0, ge=0, le=100)
    max_replicas: int = Field(..., ge=1, le=100)
    lag_target: int = Field(5, ge=1, le=100_000, description="tasks waiting per replica")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Autoscale:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscale.minReplicas ({self.min_replicas}) exceeds maxReplicas "
                f"({self.max_replicas}); lower minReplicas or raise maxReplicas"
            )
        return self


# --------------------------------------------------------------------------- Agent


def _check_tool(tool: str) -> str:
    if not re.fullmatch(TOOL_PATTERN, tool):
        raise ValueError(
            f"unknown tool {tool!r}: use a built-in ({', '.join(BUILTIN_TOOLS)}), "
            "another agent as agent:<name> (agent:<name>.<namespace> in another namespace), "
            "or an MCP server as mcp:<url-or-name>"
        )
    return tool


# The pattern is published in the CRD; locally the validator gives the friendlier message.
Tool = Annotated[
    str,
    AfterValidator(_check_tool),
    Field(max_length=253, json_schema_extra={"pattern": TOOL_PATTERN}),
]


class AgentSpec(_Wire):
    """What an agent is: its model, its tools, its memory."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.role != 'planner' "
                    "|| self.tools.exists(t, t.startsWith('agent:'))",
                    "message": "a planner needs at least one agent:<name> tool to delegate to",
                    "fieldPath": ".tools",
                },
                {
                    "rule": "!has(self.autoscale) || self.role == 'executor'",
                    "message": "autoscale scales an executor on its queue; set role: executor",
                    "fieldPath": ".autoscale",
                },
            ]
        }
    )

    model: str = Field(
        ...,
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$",
        description="a Model's name, or a model id served by the default endpoint",
    )
    tools: list[Tool] = Field(
        default_factory=list, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    memory: Literal["none", "ephemeral", "persistent"] = "ephemeral"
    role: Literal["standalone", "planner", "executor"] = "standalone"
    system_prompt: str | None = Field(None, max_length=32768)
    replicas: int = Field(1, ge=0, le=100)
    resources: Resources | None = None
    placement: Placement | None = None
    sandbox: SandboxLimits | None = None
    rag: Rag | None = None
    autoscale: Autoscale | None = None

    @model_validator(mode="after")
    def _autoscale_an_executor(self) -> AgentSpec:
        if self.autoscale is not None and self.role != "executor":
            raise ValueError("autoscale scales an executor on its queue; set role: executor")
        return self

    @field_validator("tools")
    @classmethod
    def _tools_unique(cls, tools: list[str]) -> list[str]:
        seen: set[str] = set()
        for tool in tools:
            if tool in seen:
                raise ValueError(f"tool {tool!r} is listed twice; list each tool once")
            seen.add(tool)
        return tools


class ObjectStatus(_Wire):
    """What every kind's status has: its conditions and the generation they describe."""

    model_config = ConfigDict(extra="allow")

    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = None


class AgentStatus(ObjectStatus):
    endpoint: str | None = None
    pending_tasks: int | None = Field(
        None, ge=0, description="an executor's tasks queued and not yet finished (docs/teams.md)"
    )


class Agent(_Wire):
    """An AI agent as a Kubernetes object: its model, tools and memory."""

    kind_name: ClassVar[str] = "Agent"
    plural: ClassVar[str] = "agents"

    api_version: Literal["ai.openvn/v1"]
    kind: Literal["Agent"]
    metadata: ObjectMeta
    spec: AgentSpec
    status: AgentStatus | None = None


# --------------------------------------------------------------------------- Model


class SecretKeyRef(_Wire):
    name: str = Field(..., pattern=rf"^{DNS_LABEL}(\.{DNS_LABEL})*$", max_length=253)
    key: str = Field(..., min_length=1, max_length=253)


class Endpoint(_Wire):
    """An external OpenAI-compatible endpoint."""

    url: str = Field(..., pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)
    api_key_secret_ref: SecretKeyRef | None = None
    model: str | None = Field(
        None, min_length=1, max_length=253, description="model id sent to the endpoint"
    )


class Serve(_Wire):
    """In-cluster inference on the GPU pool."""

    engine: Literal["vllm", "llama-cpp"] = "vllm"
    model: str = Field(..., min_length=1, max_length=253, description="model id or path to serve")
    gpus: int = Field(1, ge=0, le=16)
    replicas: int = Field(1, ge=0, le=100)
    image: str | None = Field(None, min_length=1, max_length=512)
    args: list[str] | None = None
    resources: Resources | None = None
    placement: Placement | None = None


class ModelSpec(_Wire):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.endpoint) != has(self.serve)",
                    "message": "set exactly one of endpoint (an external OpenAI-compatible URL) "
                    "or serve (in-cluster inference)",
                }
            ]
        }
    )

    endpoint: Endpoint | None = None
    serve: Serve | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSpec:
        if (self.endpoint is None) == (self.serve is None):
            raise ValueError(
                "set exactly one of endpoint (an external OpenAI-compatible URL) "
                "or serve (in-cluster inference)"
            )
        return self


class ModelStatus(ObjectStatus):
    url: str | None = None


class Model(_Wire):
    """Where an agent's LLM answers from: an external endpoint or in-cluster serving."""

    kind_name: ClassVar[str] = "Model"
    plural: ClassVar[str] = "models"

    api_version: Literal["ai.openvn/v1"]
    kind: Literal["Model"]
    metadata: ObjectMeta
    spec: ModelSpec
    status: ModelStatus | None = None


# --------------------------------------------------------------------------- KnowledgeBase


class InlineDocument(_Wire):
    """A document written in the manifest; a name ending in .md is chunked as Markdown."""

    name: str = Field(..., min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    text: str = Field(..., max_length=1024 * 1024)


class ConfigMapSource(_Wire):
    """Documents in a ConfigMap of the KnowledgeBase's namespace: its keys, or only these."""

    name: str = Field(..., pattern=rf"^{DNS_LABEL}(\.{DNS_LABEL})*$", max_length=253)
    keys: list[str] | None = Field(None, max_length=256)


class KnowledgeSources(_Wire):
    inline: list[InlineDocument] = Field(default_factory=list, max_length=256)
    config_maps: list[ConfigMapSource] = Field(default_factory=list, max_length=64)
    urls: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)]] = (
        Field(default_factory=list, max_length=64)
    )


class KnowledgeBaseSpec(_Wire):
    """A collection and the sources it mirrors (ingested idempotently, by content hash)."""

    collection: str = Field(..., min_length=3, max_length=63, pattern=rf"^{DNS_LABEL}$")
    sources: KnowledgeSources = Field(default_factory=KnowledgeSources)


class KnowledgeBaseStatus(ObjectStatus):
    documents: int | None = None
    chunks: int | None = None
    last_sync_time: datetime | None = Field(None, strict=False)
    source_hash: str | None = None  # of the spec and ConfigMap data last ingested (or failed)


class KnowledgeBase(_Wire):
    """Knowledge as a Kubernetes object: a vector collection and its sources."""

    kind_name: ClassVar[str] = "KnowledgeBase"
    plural: ClassVar[str] = "knowledgebases"

    api_version: Literal["ai.openvn/v1"]
    kind: Literal["KnowledgeBase"]
    metadata: ObjectMeta
    spec: KnowledgeBaseSpec
    status: KnowledgeBaseStatus | None = None


Resource = Agent | Model | KnowledgeBase
KINDS: dict[str, type[Agent] | type[Model] | type[KnowledgeBase]] = {
    "Agent": Agent,
    "Model": Model,
    "KnowledgeBase": KnowledgeBase,
}
