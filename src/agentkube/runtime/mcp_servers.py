"""What an agent's ``mcp:<name>`` tools connect to: an MCPServer of the file, or of the cluster.

In an agent pod the operator has resolved the names already: ``AGENTKUBE_MCP_SERVERS`` maps each
to its URL and names the variables holding its request headers (``api/mcp.py``); a name it does
not list (its MCPServer is missing) is left out with one line, like a server that is down. On one
machine the names are MCPServers of the same file: a ``url`` server is connected over streamable
HTTP, a ``command`` server is started as a stdio subprocess (with the SDK's minimal environment
plus its ``env``, never the agent's own secrets). An ``image`` server, a ``headersFrom`` Secret
and a name the file does not define are refused with one line before anything starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agentkube.api import pod_contract as pc
from agentkube.api.mcp import decode_servers, mcp_server_names
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import Agent
from agentkube.errors import UserError


@dataclass(frozen=True, kw_only=True)
class NamedServer:
    """One ``mcp:<name>`` tool's server: a URL (with headers) or a stdio command."""

    name: str
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def tool(self) -> str:
        return f"mcp:{self.name}"


@dataclass
class NamedServers:
    """The servers found, and one line for each name that could not be resolved."""

    servers: dict[str, NamedServer] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)


def named_servers(
    agent: Agent, in_file: Mapping[str, MCPServer], environ: Mapping[str, str]
) -> NamedServers:
    """Resolve ``agent``'s ``mcp:<name>`` tools (UserError for a file that cannot run here)."""
    names = mcp_server_names(agent.spec.tools)
    if not names:
        return NamedServers()
    if pc.ENV_MCP_SERVERS in environ:
        return _from_environment(names, environ)
    found = NamedServers()
    for name in names:
        server = in_file.get(name)
        if server is None:
            raise UserError(
                f"Agent {agent.metadata.name}: spec.tools 'mcp:{name}' names no MCPServer of this "
                f"file; add an MCPServer named {name} (url or command) or remove the tool"
            )
        found.servers[name] = _local(server)
    return found


def _local(server: MCPServer) -> NamedServer:
    spec, name = server.spec, server.metadata.name
    if spec.image is not None:
        raise UserError(
            f"MCPServer {name}: spec.image runs only in a cluster (the operator starts it); "
            "on one machine give it a command (stdio) or a url"
        )
    if spec.headers_from is not None:
        raise UserError(
            f"MCPServer {name}: spec.headersFrom reads Secret {spec.headers_from.secret_name}, "
            "which exists only in a cluster; on one machine use a url that needs no headers"
        )
    if spec.url is not None:
        return NamedServer(name=name, url=spec.url)
    assert spec.command is not None  # the API: exactly one of url, image, command
    return NamedServer(
        name=name,
        command=spec.command,
        args=tuple(spec.args or ()),
        env={e.name: e.value for e in spec.env or []},
    )


def _from_environment(names: list[str], environ: Mapping[str, str]) -> NamedServers:
    try:
        endpoints = decode_servers(environ[pc.ENV_MCP_SERVERS])
    except ValueError as e:
        raise UserError(f"{pc.ENV_MCP_SERVERS}: {e}; it is set by the operator") from None
    found = NamedServers()
    for name in names:
        endpoint = endpoints.get(name)
        if endpoint is None:
            found.unavailable.append(
                f"tool 'mcp:{name}' is unavailable: the operator found no MCPServer {name} "
                "(see the Agent's McpServersResolved condition); the agent runs without its tools"
            )
            continue
        headers = {h: environ.get(variable, "") for h, variable in endpoint.header_env.items()}
        found.servers[name] = NamedServer(name=name, url=endpoint.url, headers=headers)
    return found
