"""An agent's NetworkPolicy: deny by default, then allow only what its spec needs.

Egress: DNS; its model (the serving pods of an in-cluster Model, else the endpoint's port);
the configured memory servers (:mod:`memory`: Redis for every agent, Chroma for those with
``memory: persistent`` or ``rag``; their pods in deploy/memory's namespace, or the port of a
managed server); the sandbox gateway for
``python-interpreter``; the agents named by ``agent:<name>`` tools; the ports of its
``mcp:<url>`` servers (the MCPServers of ``mcp:<name>`` tools are added by
:func:`agentkube.operator.mcpservers.with_mcp_servers`); and the public web (ports 80 and 443,
private ranges excluded) only with ``web-browser``. Ingress: other agents of the namespace, on
the agent's port.

A NetworkPolicy cannot name a DNS host, so an external endpoint is allowed by port to any
address; put an egress gateway in front of the cluster for per-host rules.
"""

from __future__ import annotations

from typing import Any

from agentkube.api.mcp import mcp_server_url, server_port
from agentkube.api.models import Agent
from agentkube.api.teams import same_namespace_targets
from agentkube.operator.config import OperatorConfig, Peer
from agentkube.operator.memory import memory_peers
from agentkube.operator.naming import agent_pods, agent_selector
from agentkube.operator.serving import ResolvedModel

JSON = dict[str, Any]


def peer_rule(peer: Peer) -> JSON:
    return peer.egress_rule()


def _anywhere(ports: list[int], excluded: list[str]) -> JSON:
    block: JSON = {"cidr": "0.0.0.0/0"}
    if excluded:
        block["except"] = list(excluded)
    return {"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in ports]}


def model_rule(model: ResolvedModel) -> JSON:
    if model.serving_pods is not None:
        return {
            "to": [{"podSelector": {"matchLabels": dict(model.serving_pods)}}],
            "ports": [{"protocol": "TCP", "port": model.port}],
        }
    return _anywhere([model.port], [])


def egress_rules(agent: Agent, model: ResolvedModel | None, config: OperatorConfig) -> list[JSON]:
    spec = agent.spec
    rules = [peer_rule(config.dns)]
    if model is not None:
        rules.append(model_rule(model))
    for peer, port in memory_peers(agent, config):
        rules.append(peer_rule(peer) if peer is not None else _anywhere([port], []))
    if "python-interpreter" in spec.tools:
        rules.append(peer_rule(config.sandbox_gateway))
    peers = sorted(same_namespace_targets(agent))  # other namespaces': operator/cross_namespace.py
    if peers:
        rules.append(
            {
                "to": [{"podSelector": {"matchLabels": agent_selector(name)}} for name in peers],
                "ports": [{"protocol": "TCP", "port": config.agent_port}],
            }
        )
    mcp_ports = sorted({server_port(u) for t in spec.tools if (u := mcp_server_url(t))})
    if mcp_ports:  # by port to any address, like an external model endpoint (module docstring)
        rules.append(_anywhere(mcp_ports, []))
    if "web-browser" in spec.tools:
        rules.append(_anywhere(config.web_ports, config.web_excluded_cidrs))
    if config.telemetry is not None and config.telemetry.peer is not None:
        rules.append(peer_rule(config.telemetry.peer))
    return rules


def render_network_policy(
    agent: Agent, namespace: str, model: ResolvedModel | None, config: OperatorConfig, meta: JSON
) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": agent_selector(agent.metadata.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": agent_pods()}}],
                    "ports": [{"protocol": "TCP", "port": config.agent_port}],
                },
                *scrape_rules(agent, config),
            ],
            "egress": egress_rules(agent, model, config),
        },
    }


def scrape_rules(agent: Agent, config: OperatorConfig) -> list[JSON]:
    """Ingress from the configured Prometheus to the agent's metrics ports (telemetry.scraper)."""
    scraper = config.telemetry.scraper if config.telemetry is not None else None
    if scraper is None:
        return []
    source: JSON = {"podSelector": {"matchLabels": dict(scraper.pod_labels)}}
    if scraper.namespace_labels is not None:
        source["namespaceSelector"] = {"matchLabels": dict(scraper.namespace_labels)}
    ports = [config.agent_port]
    if agent.spec.rag is not None:
        ports.append(config.rag_sidecar.port)
    return [{"from": [source], "ports": [{"protocol": "TCP", "port": p} for p in ports]}]
