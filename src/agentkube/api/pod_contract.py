"""Facts the operator, the agent runtime and the sandbox gateway share about agent pods.

The operator writes these into every agent pod it renders; the runtime and the gateway client
read them; the gateway checks the audience. One module, imported by all three, so a rename can
never leave one side behind. (The sandbox pod's own contract, which must stay standard-library
only, lives in :mod:`agentkube.sandbox.kubernetes.pod_runner`.)
"""

from __future__ import annotations

from typing import Any, Final

JSON = dict[str, Any]

# Environment of an agent pod (and of `agentkube agent serve` / `run` on one machine).
ENV_NAMESPACE: Final = "AGENTKUBE_NAMESPACE"  # the memory tenant
ENV_MODEL_BASE_URL: Final = "AGENTKUBE_MODEL_BASE_URL"
ENV_MODEL_ID: Final = "AGENTKUBE_MODEL_ID"
ENV_MODEL_API_KEY: Final = "AGENTKUBE_MODEL_API_KEY"
ENV_DATA_DIR: Final = "AGENTKUBE_DATA_DIR"
ENV_SANDBOX_URL: Final = "AGENTKUBE_SANDBOX_URL"
ENV_SANDBOX_TOKEN_FILE: Final = "AGENTKUBE_SANDBOX_TOKEN_FILE"  # noqa: S105 - a name
ENV_WEB_ALLOW_PRIVATE: Final = "AGENTKUBE_WEB_ALLOW_PRIVATE"
# The MCPServers an agent's mcp:<name> tools name: JSON {name: {url, headers: {header: env}}}
# (api/mcp.py), each header's value in its own variable filled from a Secret.
ENV_MCP_SERVERS: Final = "AGENTKUBE_MCP_SERVERS"
ENV_MCP_HEADER_PREFIX: Final = "AGENTKUBE_MCP_HEADER_"
# Shared memory (docs/memory.md): the servers, and an embeddings endpoint instead of wordllama.
# In a cluster the operator sets ENV_REDIS_URL from the namespace's Secret (secretKeyRef): one
# whole URL, redis://agentkube-<ns>:<password>@host:port/db, the namespace's own ACL user, so
# every reader of the variable (state store, task queue, `agent serve --redis`) works unchanged
# and no credential appears in a pod spec. ENV_VECTOR_URL is a plain value (Chroma has no auth).
ENV_REDIS_URL: Final = "AGENTKUBE_REDIS_URL"
ENV_VECTOR_URL: Final = "AGENTKUBE_VECTOR_URL"
ENV_EMBEDDINGS_URL: Final = "AGENTKUBE_EMBEDDINGS_URL"
ENV_EMBEDDINGS_MODEL: Final = "AGENTKUBE_EMBEDDINGS_MODEL"
ENV_EMBEDDINGS_API_KEY: Final = "AGENTKUBE_EMBEDDINGS_API_KEY"

# Paths inside an agent pod.
CONFIG_DIR: Final = "/etc/agentkube"
CONFIG_FILE: Final = "agent.yaml"
DATA_DIR: Final = "/var/lib/agentkube"
SANDBOX_TOKEN_DIR: Final = "/var/run/secrets/agentkube/sandbox-gateway"  # noqa: S105 - a path
SANDBOX_TOKEN_FILE: Final = f"{SANDBOX_TOKEN_DIR}/token"

# The projected ServiceAccount token an agent shows the gateway is minted for this audience only,
# so it is worthless against the Kubernetes API (docs/gateway-auth.md).
SANDBOX_GATEWAY_AUDIENCE: Final = "agentkube-sandbox-gateway"

# Server-side apply field managers: who owns which fields of the objects agentkube writes.
OPERATOR_FIELD_MANAGER: Final = "agentkube-operator"
GATEWAY_FIELD_MANAGER: Final = "agentkube-sandbox-gateway"


def restricted_pod_security(user_id: int) -> JSON:
    """The pod-level securityContext of Pod Security ``restricted``, with a fixed non-root uid."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user_id,
        "runAsGroup": user_id,
        "fsGroup": user_id,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security(
    user_id: int | None = None, *, read_only_root: bool = True
) -> JSON:
    """A container securityContext that passes ``restricted``: non-root, no privilege
    escalation, no capabilities, seccomp ``RuntimeDefault``, and a read-only root filesystem
    unless the image cannot run with one."""
    ids = {"runAsUser": user_id, "runAsGroup": user_id} if user_id is not None else {}
    return {
        "runAsNonRoot": True,
        **ids,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
