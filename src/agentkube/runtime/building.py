"""From a manifest file and settings to a ready :class:`AgentRuntime`.

Settings come from flags, then the environment (the operator sets ``AGENTKUBE_*`` variables in
agent pods), then defaults. The sandbox is opened only when the agent has a tool that needs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agentkube.api import pod_contract as pc
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import Agent, Model, SandboxLimits
from agentkube.api.quantity import parse_bytes, parse_cpu
from agentkube.errors import UserError
from agentkube.memory.history import HistoryStore, InMemoryHistory, SqliteHistory
from agentkube.runtime.agent import AgentRuntime, TaskBudget
from agentkube.runtime.delegation import Delegator
from agentkube.runtime.incidents import IncidentsOf, no_incidents
from agentkube.runtime.mcp_servers import named_servers
from agentkube.runtime.mcp_tools import McpSettings, open_mcp_tools
from agentkube.runtime.memory_tools import open_memory_tools
from agentkube.runtime.model_resolution import choose_model
from agentkube.runtime.rag import RagFront, open_agent_model
from agentkube.runtime.tools import PYTHON_INTERPRETER, ToolEnvironment, WebSettings
from agentkube.sandbox.contract import Limits, Sandbox


def default_data_dir(environ: Mapping[str, str]) -> Path:
    if environ.get(pc.ENV_DATA_DIR):
        return Path(environ[pc.ENV_DATA_DIR])
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentkube"


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    data_dir: Path | None = None
    sandbox_pool: int = 0
    web: WebSettings | None = None
    budget: TaskBudget = field(default_factory=TaskBudget)
    mcp: McpSettings = field(default_factory=McpSettings)
    rag_front: RagFront | None = None  # starts the RAG proxy for spec.rag (runtime/rag.py)
    incidents: IncidentsOf = no_incidents  # each agent's incident stream (runtime/incidents.py)

    def resolved_data_dir(self) -> Path:
        return self.data_dir or default_data_dir(self.environ)

    def web_settings(self) -> WebSettings:
        return self.web or WebSettings(
            allow_private=_truthy(self.environ.get(pc.ENV_WEB_ALLOW_PRIVATE))
        )


def sandbox_limits(spec: SandboxLimits | None) -> Limits:
    """The execution limits of spec.sandbox, over the contract's defaults."""
    if spec is None:
        return Limits()
    overrides: dict[str, float | int] = {}
    try:
        if spec.cpu is not None:
            overrides["cpu"] = parse_cpu(spec.cpu)
        if spec.memory is not None:
            overrides["memory_bytes"] = parse_bytes(spec.memory)
    except ValueError as e:
        raise UserError(f"spec.sandbox: {e}") from e
    if spec.timeout_seconds is not None:
        overrides["timeout_s"] = spec.timeout_seconds
    if spec.pids is not None:
        overrides["pids"] = spec.pids
    return Limits.model_validate(overrides)


def history_for(agent: Agent, data_dir: Path) -> HistoryStore | None:
    if agent.spec.memory == "persistent":
        return SqliteHistory(data_dir / "history.sqlite3")
    if agent.spec.memory == "ephemeral":
        return InMemoryHistory()
    return None


def open_sandbox(settings: RuntimeSettings) -> Sandbox:
    """The sandbox backend for this process: the gateway at ``AGENTKUBE_SANDBOX_URL`` (set by
    the operator in a cluster, token from ``AGENTKUBE_SANDBOX_TOKEN_FILE``), else the local one."""
    url = settings.environ.get(pc.ENV_SANDBOX_URL)
    if url:
        from agentkube.gateway.client import DEFAULT_TOKEN_FILE, RemoteSandbox, token_from_file

        token_file = settings.environ.get(pc.ENV_SANDBOX_TOKEN_FILE) or DEFAULT_TOKEN_FILE
        return RemoteSandbox(url, token=token_from_file(Path(token_file)))
    from agentkube.sandbox.local import LocalSandbox

    return LocalSandbox(pool_size=settings.sandbox_pool)


@asynccontextmanager
async def open_runtime(
    agent: Agent,
    models: list[Model],
    settings: RuntimeSettings,
    *,
    delegator: Delegator | None = None,
    mcp_servers: Mapping[str, MCPServer] | None = None,
) -> AsyncIterator[AgentRuntime]:
    """An :class:`AgentRuntime` with its sandbox; the sandbox is closed on exit. ``delegator``
    runs its ``agent:`` tools (see :mod:`agentkube.runtime.team`); ``mcp_servers`` are the
    MCPServers of the file, by name, its ``mcp:<name>`` tools may use."""
    choice = choose_model(
        agent,
        models,
        override=settings.model,
        base_url=settings.base_url,
        api_key=settings.api_key,
        environ=settings.environ,
    )
    limits = sandbox_limits(agent.spec.sandbox)
    named = named_servers(agent, mcp_servers or {}, settings.environ)
    history = history_for(agent, settings.resolved_data_dir())
    sandbox = open_sandbox(settings) if PYTHON_INTERPRETER in agent.spec.tools else None
    try:
        environ, data_dir = dict(settings.environ), settings.resolved_data_dir()
        async with (
            open_agent_model(agent, choice, environ, data_dir, settings.rag_front) as model,
            open_mcp_tools(agent.spec.tools, settings.mcp, named) as mcp,
            open_memory_tools(agent, environ, data_dir) as memory_tools,
        ):
            yield AgentRuntime(
                agent,
                choice=choice,
                model=model,
                tools=ToolEnvironment(
                    sandbox=sandbox,
                    limits=limits,
                    web=settings.web_settings(),
                    toolsets=(*mcp.toolsets, *memory_tools),
                    delegator=delegator,
                    incidents=settings.incidents(agent.metadata.name),
                ),
                history=history,
                stream_text=choice.kind == "openai",
                budget=settings.budget,
            )
    finally:
        if sandbox is not None:
            await sandbox.aclose()
