"""What an ``mcp:`` tool names (pure): an MCP server URL, or (later) a ``kind: MCPServer``.

The runtime connects to the URL (:mod:`agentkube.runtime.mcp_tools`), the operator opens the
agent's egress to its port (:mod:`agentkube.operator.networking`), and the capability check
lets URLs through while ``mcp:<name>`` is not run yet (:mod:`agentkube.api.capabilities`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

MCP_SCHEME = "mcp:"
DEFAULT_PORTS = {"http": 80, "https": 443}


def mcp_server_url(tool: str) -> str | None:
    """The server URL of an ``mcp:http(s)://...`` tool; None for anything else."""
    if not tool.startswith(MCP_SCHEME):
        return None
    url = tool.removeprefix(MCP_SCHEME)
    parts = urlsplit(url)
    return url if parts.scheme in DEFAULT_PORTS and parts.hostname else None


def server_port(url: str) -> int:
    """The TCP port an MCP server URL connects to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or DEFAULT_PORTS[parts.scheme]
