"""One level-triggered reconcile of an Agent, a Model or an MCPServer.

Render the children from the cached object, apply those that drifted, then compute the status
and write it only if it changed (:mod:`agentkube.operator.writing`). With nothing to repair, a
reconcile sends no request at all. The result says whether to retry later: temporary failures
(API server down, conflicts) are retried with back-off; permanent ones (the API server rejected
an object) wait for the next change or resync.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from agentkube.api.capabilities import unsupported_message
from agentkube.api.loading import describe
from agentkube.api.mcp import mcp_server_names
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import Agent, Model
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import ReconcileError
from agentkube.operator.mcp_discovery import DiscoveryFailed, ToolDiscovery
from agentkube.operator.mcpservers import render_mcpserver, resolve_servers, server_url
from agentkube.operator.naming import mcpserver_child_name
from agentkube.operator.placement import PlacementError
from agentkube.operator.rendering import endpoint, render_agent
from agentkube.operator.serving import (
    ResolvedModel,
    endpoint_for_model,
    model_base_url,
    render_model,
)
from agentkube.operator.status import Check, conditions, deployment_available, new_failures
from agentkube.operator.team_wiring import TeamWiring
from agentkube.operator.writing import TERMINATING, Writer, Writes

JSON = dict[str, Any]
log = logging.getLogger(__name__)

EVENT_WORTHY = {
    "ModelResolved",
    "McpServersResolved",
    "MemoryReady",
    "Reconciled",
    "ToolsDiscovered",
}


class Memory(Protocol):
    """Per namespace: its shared-memory credentials (:mod:`agentkube.operator.memory_access`)."""

    async def ensure(self, namespace: str) -> Check: ...


class Knowledge(Protocol):
    """KnowledgeBases (:class:`agentkube.operator.knowledge_reconciling.KnowledgeBases`)."""

    async def reconcile(self, body: JSON, namespace: str) -> bool: ...


class Reconciler:
    def __init__(
        self,
        *,
        cache: Cache,
        applier: Writer,
        config: OperatorConfig,
        memory: Memory | None = None,
        discover: ToolDiscovery | None = None,
        knowledge: Knowledge | None = None,
        teams: TeamWiring | None = None,
    ) -> None:
        self.cache = cache
        self.applier = applier
        self.writes = Writes(cache, applier)
        self.config = config
        self.memory = memory
        self.discover = discover  # None: MCPServers' tools are not listed
        self.knowledge = knowledge  # None: KnowledgeBases are left alone
        self.teams = teams  # None: no autoscaling, no pending count
        self._absent: set[tuple[str, str, str]] = set()  # Models/MCPServers read and not found

    async def reconcile(self, kind: str, namespace: str, name: str) -> bool:
        """Reconcile one object from the cache; True when it should be retried later."""
        body = self.cache.get(kind, namespace, name)
        if kind == "KnowledgeBase":  # its own module; it finalizes deletions too
            if body is None or self.knowledge is None:
                return False
            return await self.knowledge.reconcile(body, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False  # gone: the garbage collector removes the children
        if kind == "Agent":
            return await self.reconcile_agent(body, namespace)
        if kind == "MCPServer":
            return await self.reconcile_mcpserver(body, namespace)
        return await self.reconcile_model(body, namespace)

    # ------------------------------------------------------------------ Agent

    async def reconcile_agent(self, body: JSON, namespace: str) -> bool:
        try:
            agent = Agent.model_validate(
                {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
            )
        except ValidationError as e:
            check = Check(type="Reconciled", ok=False, reason="InvalidSpec", message=describe(e))
            return await self._finish(body, [check], {}) or False
        try:
            model = await self._model_for(agent, namespace)
            named = await self._mcpservers_of(agent, namespace)
        except ReconcileError as e:
            # Rendering without them would roll the Agent's pods onto a config that lacks them.
            log.warning("%s", e)
            return True
        checks = [self._model_check(agent, model, namespace)]
        servers, mcp_check = resolve_servers(agent, namespace, named)
        checks += [mcp_check] if mcp_check is not None else []
        unsupported = unsupported_message(agent)
        if unsupported is not None:
            # No pod: it would only crash-loop on the same refusal (the runtime's exit 2).
            checks.append(
                Check(type="Reconciled", ok=False, reason="Unsupported", message=unsupported)
            )
            return await self._finish(body, checks, {}) or False
        try:
            children = render_agent(agent, namespace, model, self.config, mcp_servers=servers)
        except PlacementError as e:
            checks.append(Check(type="Reconciled", ok=False, reason=e.reason, message=str(e)))
            return await self._finish(body, checks, {}) or False
        # Its pods read the namespace's memory Secret: ensured first; a memory server that is
        # down is a condition and a retry, and the rest is applied all the same.
        memory = await self.memory.ensure(namespace) if self.memory is not None else None
        teams = await self.teams.adjust(agent, namespace, children) if self.teams else None
        applied = await self.writes.apply_all(teams.children if teams else children)
        deployment = self.cache.get("Deployment", namespace, agent.metadata.name)
        checks += [*([memory] if memory else []), applied.check, deployment_available(deployment)]
        extra = {"endpoint": endpoint(agent, namespace, self.config)}
        memory_retry = memory is not None and not memory.ok and applied.check != TERMINATING
        retry = applied.retry or memory_retry
        if teams is not None:
            checks, extra, retry = checks + teams.checks, extra | teams.extra, retry or teams.retry
        return await self._finish(body, checks, extra) or retry

    async def _depended_on(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A Model or MCPServer an Agent names, from the cache; read once from the API server
        when the cache has never seen it, since right after the operator starts its watch may
        not have listed it yet (and an Agent reconciled then would be rendered without it).
        What was read is not cached (only the watch says what exists, and what was deleted);
        a name found missing is remembered, and later misses wait for the watch to bring it."""
        body = self.cache.get(kind, namespace, name)
        if body is not None or (kind, namespace, name) in self._absent:
            return body
        body = await self.applier.read(kind, namespace, name)
        if body is None:
            self._absent.add((kind, namespace, name))
        return body

    async def _model_for(self, agent: Agent, namespace: str) -> ResolvedModel | None:
        models: dict[str, Model] = {}
        body = await self._depended_on("Model", namespace, agent.spec.model)
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            try:
                models[agent.spec.model] = _parse_model(body)
            except ValidationError:
                log.warning(
                    "Model %s/%s does not validate; ignoring it", namespace, agent.spec.model
                )
        return endpoint_for_model(agent.spec.model, namespace, models, self.config)

    async def _mcpservers_of(self, agent: Agent, namespace: str) -> dict[str, MCPServer]:
        found: dict[str, MCPServer] = {}
        for name in mcp_server_names(agent.spec.tools):
            body = await self._depended_on("MCPServer", namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                continue
            try:
                found[name] = _parse(MCPServer, body)
            except ValidationError:
                log.warning("MCPServer %s/%s does not validate; ignoring it", namespace, name)
        return found

    @staticmethod
    def _model_check(agent: Agent, model: ResolvedModel | None, namespace: str) -> Check:
        if model is None:
            return Check(
                type="ModelResolved",
                ok=False,
                reason="ModelNotFound",
                message=f"no Model {agent.spec.model!r} in namespace {namespace} and no default "
                "endpoint is configured; create the Model or fix spec.model",
            )
        return Check(
            type="ModelResolved",
            ok=True,
            reason="ModelFound" if model.source == "Model" else "DefaultEndpoint",
            message=f"{model.model_id} at {model.base_url}",
        )

    # ------------------------------------------------------------------ Model

    async def reconcile_model(self, body: JSON, namespace: str) -> bool:
        try:
            model = _parse_model(body)
        except ValidationError as e:
            check = Check(type="Reconciled", ok=False, reason="InvalidSpec", message=describe(e))
            return await self._finish(body, [check], {}) or False
        try:
            children = render_model(model, namespace, self.config)
        except PlacementError as e:
            check = Check(type="Reconciled", ok=False, reason=e.reason, message=str(e))
            return await self._finish(body, [check], {}) or False
        applied = await self.writes.apply_all(children)
        if applied.check.ok:
            applied = await self.writes.prune(body, namespace, children)
        checks = [applied.check]
        if model.spec.serve is not None:
            deployment = next(c for c in children if c["kind"] == "Deployment")
            meta = deployment["metadata"]
            checks.append(
                deployment_available(self.cache.get("Deployment", namespace, meta["name"]))
            )
        extra = {"url": model_base_url(model, namespace, self.config)}
        return await self._finish(body, checks, extra) or applied.retry

    # ------------------------------------------------------------------ MCPServer

    async def reconcile_mcpserver(self, body: JSON, namespace: str) -> bool:
        try:
            server = _parse(MCPServer, body)
        except ValidationError as e:
            check = Check(type="Reconciled", ok=False, reason="InvalidSpec", message=describe(e))
            return await self._finish(body, [check], {}) or False
        children = render_mcpserver(server, namespace, self.config)
        child = mcpserver_child_name(server.metadata.name)
        applied = await self.writes.apply_all(children)
        if applied.check.ok:  # a server switched from image to url or command: nothing left over
            applied = await self.writes.prune(body, namespace, children, child)
        url = server_url(server, namespace)
        if url is None:
            check = Check(
                type="Reconciled",
                ok=False,
                reason="LocalOnly",
                message="a command (stdio) server runs only on one machine (agentkube run); "
                "give it an image and port, or a url, to use it in a cluster",
            )
            return await self._finish(body, [check], {}) or applied.retry
        checks, listable = [applied.check], applied.check.ok
        if children:
            available = deployment_available(self.cache.get("Deployment", namespace, child))
            checks.append(available)
            listable = listable and available.ok
        extra: JSON = {"url": url}
        retry = applied.retry
        if self.discover is not None and listable:
            try:
                tools = await self.discover(namespace, url, server.spec.headers_from)
            except DiscoveryFailed as e:
                checks.append(
                    Check(
                        type="ToolsDiscovered", ok=False, reason="DiscoveryFailed", message=str(e)
                    )
                )
                retry = True
            else:
                message = f"{len(tools)} tools"
                checks.append(
                    Check(type="ToolsDiscovered", ok=True, reason="Listed", message=message)
                )
                extra["tools"] = tools
        return await self._finish(body, checks, extra) or retry

    # ------------------------------------------------------------------ shared

    async def _finish(self, body: JSON, checks: list[Check], extra: JSON) -> bool:
        """Write the status if it changed and post Events for new failures; True to retry."""
        if TERMINATING in checks:
            return False
        meta = body["metadata"]
        previous = (body.get("status") or {}).get("conditions") or []
        generation = meta.get("generation")
        now: datetime = self.applier.clock()
        wanted = {
            "conditions": conditions(checks, previous, generation, now),
            "observedGeneration": generation,
            **extra,
        }
        outcome = await self.writes.status(body, wanted)
        if outcome.written:
            for failure in new_failures(previous, wanted["conditions"]):
                if failure["type"] in EVENT_WORTHY:
                    await self.applier.post_event(
                        body, type="Warning", reason=failure["reason"], message=failure["message"]
                    )
        return outcome.retry


def _parse_model(body: JSON) -> Model:
    return _parse(Model, body)


Parsed = TypeVar("Parsed", Agent, Model, MCPServer)


def _parse(kind: type[Parsed], body: JSON) -> Parsed:
    return kind.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
