"""MCPServers: the objects of an ``image`` server, and what an Agent's ``mcp:<name>`` means (pure).

An ``image`` server becomes a Deployment (Pod Security ``restricted``, read-only root, non-root,
no ServiceAccount token, no service links, bounded resources) and a Service named
``<server>-mcp``, and a NetworkPolicy that lets in only the namespace's agent pods and the
operator (which lists the server's tools) on the server's port; the server's own egress stays as
the cluster has it (an MCP server usually calls some API). A ``url`` server has no children. A
``command`` server is a local stdio subprocess: nothing runs it in a cluster.

:func:`resolve_servers` maps an Agent's ``mcp:<name>`` tools to the MCPServers of its namespace;
:func:`mcp_env` hands the result to the agent pod (``AGENTKUBE_MCP_SERVERS`` and a variable per
header, filled from the header Secret), and :func:`egress_rules` lets the pod reach exactly those
servers: an image server's pods on its port, a url server's port (to any address: a
NetworkPolicy cannot name a DNS host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkube.api import pod_contract as pc
from agentkube.api.mcp import ServerEndpoint, encode_servers, mcp_server_names, server_port
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import Agent
from agentkube.api.pod_contract import restricted_container_security, restricted_pod_security
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import (
    agent_pods,
    mcpserver_child_name,
    mcpserver_labels,
    mcpserver_selector,
    metadata,
    owner_reference,
    stamp,
)
from agentkube.operator.placement import pool_scheduling
from agentkube.operator.status import Check

JSON = dict[str, Any]

# Who may connect to an image server besides agents: the operator, to list its tools.
OPERATOR_PODS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agentkube-system"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
}
DEFAULT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def server_url(server: MCPServer, namespace: str) -> str | None:
    """The URL agents (and the operator) connect to; None for a local ``command`` server."""
    spec = server.spec
    if spec.url is not None:
        return spec.url
    if spec.image is not None:
        service = mcpserver_child_name(server.metadata.name)
        return f"http://{service}.{namespace}.svc:{spec.port}{spec.path}"
    return None


# --------------------------------------------------------------------------- image servers


def _resources(server: MCPServer) -> JSON:
    if server.spec.resources is None:
        return {kind: dict(values) for kind, values in DEFAULT_RESOURCES.items()}
    given = server.spec.resources.model_dump(by_alias=True, exclude_none=True)
    return {kind: {k: str(v) for k, v in values.items()} for kind, values in given.items()}


def server_container(server: MCPServer, config: OperatorConfig) -> JSON:
    spec = server.spec
    assert spec.image is not None and spec.port is not None  # the API: image goes with port
    probe = {"tcpSocket": {"port": "mcp"}, "periodSeconds": 10}
    return {
        "name": "server",
        "image": spec.image,
        "imagePullPolicy": config.image_pull_policy,
        **({"args": list(spec.args)} if spec.args else {}),
        "env": [{"name": e.name, "value": e.value} for e in spec.env or []],
        "ports": [{"name": "mcp", "containerPort": spec.port, "protocol": "TCP"}],
        "resources": _resources(server),
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def render_mcpserver(server: MCPServer, namespace: str, config: OperatorConfig) -> list[JSON]:
    """The children of an MCPServer: for ``image`` a Service, a Deployment and an ingress
    NetworkPolicy; nothing otherwise."""
    spec = server.spec
    if spec.image is None or spec.port is None:
        return []
    name = server.metadata.name
    owner = owner_reference("MCPServer", name, server.metadata.uid or "")
    child, labels = mcpserver_child_name(name), mcpserver_labels(name)
    selector = mcpserver_selector(name)

    def meta() -> JSON:
        return metadata(child, namespace, labels, owner)

    pod_spec: JSON = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(config.agent_user_id),
        "containers": [server_container(server, config)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **pool_scheduling(config, config.agent_pool, None),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(),
        "spec": {
            "selector": selector,
            "ports": [{"name": "mcp", "port": spec.port, "targetPort": "mcp", "protocol": "TCP"}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": agent_pods()}}, OPERATOR_PODS],
                    "ports": [{"protocol": "TCP", "port": spec.port}],
                }
            ],
        },
    }
    return [stamp(service), stamp(deployment), stamp(policy)]


# --------------------------------------------------------------------------- agents


@dataclass(frozen=True, kw_only=True)
class ResolvedServer:
    """One MCPServer an agent names: where it answers and what its egress must allow."""

    name: str
    url: str
    headers: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # header -> secret, key
    pods: Mapping[str, str] | None = None  # labels of an image server's pods
    port: int = 443


def resolve_servers(
    agent: Agent, namespace: str, servers: Mapping[str, MCPServer]
) -> tuple[list[ResolvedServer], Check | None]:
    """The MCPServers ``agent`` names that can be reached, and a check when it names any."""
    names = mcp_server_names(agent.spec.tools)
    if not names:
        return [], None
    resolved: list[ResolvedServer] = []
    missing: list[str] = []
    local: list[str] = []
    for name in names:
        server = servers.get(name)
        url = server_url(server, namespace) if server is not None else None
        if server is None:
            missing.append(name)
        elif url is None:
            local.append(name)
        else:
            resolved.append(_resolved(server, url))
    problem = (
        (
            "McpServerNotFound",
            f"no MCPServer {', '.join(missing)} in namespace {namespace}; create it or remove "
            "the mcp:<name> tool (the agent runs without it meanwhile)",
        )
        if missing
        else (
            "McpServerNotRunnable",
            f"MCPServer {', '.join(local)} is a local command (stdio), which runs only on one "
            "machine; give it an image and port, or a url",
        )
        if local
        else None
    )
    if problem is not None:
        reason, message = problem
        return resolved, Check(type="McpServersResolved", ok=False, reason=reason, message=message)
    found = ", ".join(s.name for s in resolved)
    return resolved, Check(type="McpServersResolved", ok=True, reason="Found", message=found)


def _resolved(server: MCPServer, url: str) -> ResolvedServer:
    spec = server.spec
    headers = {}
    if spec.headers_from is not None:
        secret = spec.headers_from.secret_name
        headers = {h: (secret, key) for h, key in spec.headers_from.headers.items()}
    pods = mcpserver_selector(server.metadata.name) if spec.image is not None else None
    return ResolvedServer(
        name=server.metadata.name,
        url=url,
        headers=headers,
        pods=pods,
        port=spec.port if spec.port is not None else server_port(url),
    )


def mcp_env(resolved: Sequence[ResolvedServer], agent: Agent) -> list[JSON]:
    """The agent pod's ``AGENTKUBE_MCP_SERVERS`` and header variables (none without names)."""
    if not mcp_server_names(agent.spec.tools):
        return []
    env: list[JSON] = []
    endpoints: dict[str, ServerEndpoint] = {}
    for server in resolved:
        header_env: dict[str, str] = {}
        for header, (secret, key) in sorted(server.headers.items()):
            variable = f"{pc.ENV_MCP_HEADER_PREFIX}{len(env)}"
            header_env[header] = variable
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            )
        endpoints[server.name] = ServerEndpoint(url=server.url, header_env=header_env)
    return [{"name": pc.ENV_MCP_SERVERS, "value": encode_servers(endpoints)}, *env]


def egress_rules(resolved: Sequence[ResolvedServer]) -> list[JSON]:
    """One rule per MCPServer an agent names: its pods, or its port anywhere."""
    rules: list[JSON] = []
    for server in sorted(resolved, key=lambda s: s.name):
        ports = [{"protocol": "TCP", "port": server.port}]
        if server.pods is not None:
            rules.append(
                {"to": [{"podSelector": {"matchLabels": dict(server.pods)}}], "ports": ports}
            )
        else:
            rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": ports})
    return rules


def with_mcp_servers(
    children: list[JSON], agent: Agent, resolved: Sequence[ResolvedServer]
) -> list[JSON]:
    """An Agent's rendered children with its MCPServers added: their URLs (and header
    variables) in the runtime container's env, and an egress rule each in the NetworkPolicy."""
    env, rules = mcp_env(resolved, agent), egress_rules(resolved)
    if not env:
        return children
    result = []
    for child in children:
        if child["kind"] == "Deployment":
            pod = child["spec"]["template"]["spec"]
            runtime, *others = pod["containers"]
            runtime = {**runtime, "env": [*runtime.get("env", []), *env]}
            pod = {**pod, "containers": [runtime, *others]}
            template = {**child["spec"]["template"], "spec": pod}
            child = {**child, "spec": {**child["spec"], "template": template}}
        elif child["kind"] == "NetworkPolicy":
            spec = child["spec"]
            child = {**child, "spec": {**spec, "egress": [*spec["egress"], *rules]}}
        result.append(child)
    return result
