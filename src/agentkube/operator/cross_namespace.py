"""``agent:<name>.<namespace>``: delegation to another namespace's agent, only where it is allowed.

The target decides: its Agent carries the annotation ``ai.openvn/allow-delegation-from`` naming
the caller namespaces it accepts (comma-separated; no wildcard — each namespace is named). Then,
from the operator's cache of Agents:

- the **caller** (a planner in namespace A naming ``agent:coder.b``) gets ``--peer
  coder.b=http://coder.b.svc:PORT`` and an egress rule to exactly that agent's pods in b; a target
  that is missing, or does not name A, gets no peer and no egress, and the caller's
  ``DelegationAllowed`` condition is False (``TargetNotFound`` / ``DelegationRefused``) naming
  the annotation to set — its model then gets a tool error if it calls that agent;
- the **target** gets an ingress rule from exactly the allowed callers' pods in their namespaces
  (its own namespace's agents are allowed already, :mod:`networking`).

Both sides are rendered from the cache, so each must be reconciled when the other changes:
:class:`~agentkube.operator.team_wiring.TeamWiring` asks for a reconcile of the counterparts
whose relation changed. The target's namespace must be one the operator watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentkube.api.models import Agent
from agentkube.api.teams import delegation_targets
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import agent_selector, stamp
from agentkube.operator.status import Check

JSON = dict[str, Any]
Ref = tuple[str, str, str]

ALLOW_ANNOTATION = "ai.openvn/allow-delegation-from"
CONDITION = "DelegationAllowed"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """An Agent's delegation across namespaces, as the cache has it."""

    allowed: list[tuple[str, str]]  # (name, namespace) it may call
    refused: list[str]  # why each other target may not be called
    callers: list[tuple[str, str]]  # (name, namespace) of the other namespaces' agents calling it

    @property
    def related(self) -> frozenset[Ref]:
        """The Agents whose rendering depends on this one's (to reconcile when it changes)."""
        return frozenset(("Agent", ns, name) for name, ns in (*self.allowed, *self.callers))

    def check(self) -> Check | None:
        if self.refused:
            return Check(
                type=CONDITION,
                ok=False,
                reason="DelegationRefused",
                message="; ".join(self.refused),
            )
        if self.allowed:
            names = ", ".join(f"{name}.{ns}" for name, ns in self.allowed)
            return Check(type=CONDITION, ok=True, reason="Allowed", message=f"may call {names}")
        return None


def remote_targets(agent: Agent) -> list[tuple[str, str]]:
    """(name, namespace) of each ``agent:<name>.<namespace>`` tool."""
    return [
        (name, ns) for name, _, ns in (t.partition(".") for t in delegation_targets(agent)) if ns
    ]


def allowed_namespaces(annotations: dict[str, str]) -> set[str]:
    value = annotations.get(ALLOW_ANNOTATION, "")
    return {ns.strip() for ns in value.split(",") if ns.strip()}


def allows(target: JSON | None, caller_namespace: str) -> bool:
    annotations = (target or {}).get("metadata", {}).get("annotations") or {}
    return caller_namespace in allowed_namespaces(annotations)


def resolve(agent: Agent, namespace: str, cache: Cache) -> Resolved:
    allowed, refused = [], []
    for name, ns in remote_targets(agent):
        if ns == namespace:
            refused.append(f"agent:{name}.{ns} names this namespace: write agent:{name}")
            continue
        target = cache.get("Agent", ns, name)
        if target is None:
            refused.append(
                f"no Agent {ns}/{name} is known (TargetNotFound): create it, and make sure the "
                f"operator watches namespace {ns}"
            )
        elif not allows(target, namespace):
            refused.append(
                f"Agent {ns}/{name} does not allow delegation from namespace {namespace}: "
                f"add {namespace} to its annotation {ALLOW_ANNOTATION}"
            )
        else:
            allowed.append((name, ns))
    return Resolved(allowed=allowed, refused=refused, callers=callers(agent, namespace, cache))


def callers(agent: Agent, namespace: str, cache: Cache) -> list[tuple[str, str]]:
    """The other namespaces' Agents naming this one that it allows."""
    allowed = allowed_namespaces(agent.metadata.annotations)
    if not allowed:
        return []
    tool = f"agent:{agent.metadata.name}.{namespace}"
    return sorted(
        (name, ns)
        for (ns, name), body in cache.items("Agent")
        if ns in allowed and tool in (body.get("spec", {}).get("tools") or [])
    )


def _pods_in(name: str, namespace: str) -> JSON:
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}},
        "podSelector": {"matchLabels": agent_selector(name)},
    }


def wire(
    children: list[JSON], agent: Agent, resolved: Resolved, config: OperatorConfig
) -> list[JSON]:
    """``children`` with the allowed peers' flags and the NetworkPolicy rules of both sides."""
    if not resolved.allowed and not resolved.callers:
        return children
    port = config.agent_port
    ports = [{"protocol": "TCP", "port": port}]
    result = []
    for child in children:
        if child["kind"] == "Deployment" and resolved.allowed:
            child = stamp(_with_peers(child, agent, resolved.allowed, port))
        elif child["kind"] == "NetworkPolicy":
            spec = dict(child["spec"])
            if resolved.allowed:
                to = [_pods_in(name, ns) for name, ns in resolved.allowed]
                spec["egress"] = [*spec["egress"], {"to": to, "ports": ports}]
            if resolved.callers:
                sources = [_pods_in(name, ns) for name, ns in resolved.callers]
                spec["ingress"] = [*spec["ingress"], {"from": sources, "ports": ports}]
            child = stamp({**child, "spec": spec})
        result.append(child)
    return result


def _with_peers(deployment: JSON, agent: Agent, allowed: list[tuple[str, str]], port: int) -> JSON:
    template = deployment["spec"]["template"]
    container, *others = template["spec"]["containers"]
    args = list(container["args"])
    if "--public-url" not in args:
        args += ["--public-url", f"http://{agent.metadata.name}:{port}"]
    for name, ns in allowed:
        args += ["--peer", f"{name}.{ns}=http://{name}.{ns}.svc:{port}"]
    pod = {**template["spec"], "containers": [{**container, "args": args}, *others]}
    spec = {**deployment["spec"], "template": {**template, "spec": pod}}
    return {**deployment, "spec": spec}
