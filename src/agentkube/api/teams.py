"""Teams in a manifest file (pure): which Agent leads, and every Agent it delegates to.

A file with several Agents is a team: the planner (the only ``role: planner``, or the one named
by ``--agent``) and every Agent it reaches through ``agent:<name>`` tools, transitively. Each
reference must name an Agent of the same file; a cycle is allowed in the file (the runtime
refuses a delegation that would close it), a dangling reference is not.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from agentkube.api.capabilities import unsupported_message
from agentkube.api.errors import ManifestError
from agentkube.api.loading import Resource, load_file
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import Agent, KnowledgeBase, Model

AGENT_TOOL_PREFIX = "agent:"
DEFAULT_MAX_DEPTH = 3


def delegation_targets(agent: Agent) -> list[str]:
    """The names of the agents ``agent`` may delegate to, in spec order (``name.namespace``
    for an agent of another namespace)."""
    return [t.removeprefix(AGENT_TOOL_PREFIX) for t in agent.spec.tools if t.startswith("agent:")]


def same_namespace_targets(agent: Agent) -> list[str]:
    """The :func:`delegation_targets` in ``agent``'s own namespace (no ``.namespace``)."""
    return [t for t in delegation_targets(agent) if "." not in t]


@dataclass(frozen=True, kw_only=True)
class Team:
    """The lead Agent of a run and every Agent reachable from it, by name."""

    lead: Agent
    members: dict[str, Agent]
    models: list[Model]
    knowledge: list[KnowledgeBase] = field(default_factory=list)  # ingested before the run
    mcp_servers: dict[str, MCPServer] = field(default_factory=dict)

    @property
    def is_solo(self) -> bool:
        return len(self.members) == 1


def _lead(agents: list[Agent], source: str, name: str | None) -> Agent:
    names = ", ".join(a.metadata.name for a in agents) or "none"
    if name is not None:
        for agent in agents:
            if agent.metadata.name == name:
                return agent
        raise ManifestError(f"{source}: --agent {name!r}: no such Agent in the file ({names})")
    if len(agents) == 1:
        return agents[0]
    planners = [a for a in agents if a.spec.role == "planner"]
    if len(planners) == 1:
        return planners[0]
    which = "no planner" if not planners else f"{len(planners)} planners"
    raise ManifestError(
        f"{source}: {len(agents)} Agents ({names}) and {which}; pass --agent NAME to choose one"
    )


def select_team(
    resources: list[Resource],
    source: str,
    name: str | None = None,
    *,
    elsewhere: Collection[str] = (),
) -> Team:
    """The team led by ``name`` (or the only Agent, or the only planner) of a parsed file.
    Agents named in ``elsewhere`` run somewhere else (reached over A2A): they need not be in
    the file."""
    agents = [r for r in resources if isinstance(r, Agent)]
    by_name = {a.metadata.name: a for a in agents}
    lead = _lead(agents, source, name)
    members: dict[str, Agent] = {}
    pending = [lead]
    while pending:
        agent = pending.pop()
        if agent.metadata.name in members:
            continue
        members[agent.metadata.name] = agent
        unsupported = unsupported_message(agent)
        if unsupported is not None:
            raise ManifestError(f"{source}: Agent {agent.metadata.name}: {unsupported}")
        # Another namespace's agent (name.namespace) always runs elsewhere: the cluster wires it.
        for target in same_namespace_targets(agent):
            if target in elsewhere and target not in by_name:
                continue
            if target not in by_name:
                raise ManifestError(
                    f"{source}: Agent {agent.metadata.name}: spec.tools 'agent:{target}' names no "
                    f"Agent of this file; add an Agent named {target} or remove the tool"
                )
            pending.append(by_name[target])
    return Team(
        lead=lead,
        members=members,
        models=[r for r in resources if isinstance(r, Model)],
        knowledge=_knowledge_bases(resources, source),
        mcp_servers={r.metadata.name: r for r in resources if isinstance(r, MCPServer)},
    )


def _knowledge_bases(resources: list[Resource], source: str) -> list[KnowledgeBase]:
    """The file's KnowledgeBases; each owns its collection (ingestion prunes what it lacks)."""
    owners: dict[str, str] = {}
    bases = [r for r in resources if isinstance(r, KnowledgeBase)]
    for kb in bases:
        name, collection = kb.metadata.name, kb.spec.collection
        if collection in owners:
            raise ManifestError(
                f"{source}: KnowledgeBase {name}: spec.collection {collection!r} is also "
                f"KnowledgeBase {owners[collection]}'s; give each its own collection"
            )
        owners[collection] = name
    return bases


def load_team(path: Path, name: str | None = None, *, elsewhere: Collection[str] = ()) -> Team:
    """The team of a manifest file; needs no model framework (bad files fail fast)."""
    return select_team(load_file(path), str(path), name, elsewhere=elsewhere)
