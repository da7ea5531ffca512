"""What an ``mcp:`` tool names (pure): an MCP server URL, or a ``kind: MCPServer`` by name.

The runtime connects to the URL (:mod:`agentkube.runtime.mcp_tools`), the operator opens the
agent's egress to its port (:mod:`agentkube.operator.networking`). A name is resolved to an
MCPServer of the same file (one machine) or of the same namespace (the operator, which hands the
agent pod the servers' URLs in ``AGENTKUBE_MCP_SERVERS``: :func:`encode_servers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agentkube.api.models import DNS_LABEL

MCP_SCHEME = "mcp:"
DEFAULT_PORTS = {"http": 80, "https": 443}


def mcp_server_url(tool: str) -> str | None:
    """The server URL of an ``mcp:http(s)://...`` tool; None for anything else."""
    if not tool.startswith(MCP_SCHEME):
        return None
    url = tool.removeprefix(MCP_SCHEME)
    parts = urlsplit(url)
    return url if parts.scheme in DEFAULT_PORTS and parts.hostname else None


def mcp_server_name(tool: str) -> str | None:
    """The MCPServer an ``mcp:<name>`` tool names; None for URLs and other tools."""
    if not tool.startswith(MCP_SCHEME):
        return None
    name = tool.removeprefix(MCP_SCHEME)
    return name if re.fullmatch(DNS_LABEL, name) and len(name) <= 63 else None


def mcp_server_names(tools: list[str]) -> list[str]:
    """The MCPServers a list of tools names, in order."""
    return [name for tool in tools if (name := mcp_server_name(tool)) is not None]


def server_port(url: str) -> int:
    """The TCP port an MCP server URL connects to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True, kw_only=True)
class ServerEndpoint:
    """Where an agent pod reaches one MCPServer: its URL, and for each request header the
    environment variable holding the value (filled from a Secret by the kubelet)."""

    url: str
    header_env: Mapping[str, str] = field(default_factory=dict)


def encode_servers(servers: Mapping[str, ServerEndpoint]) -> str:
    """The value of ``AGENTKUBE_MCP_SERVERS``."""
    doc = {
        name: {"url": s.url, "headers": dict(s.header_env)} for name, s in sorted(servers.items())
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def decode_servers(text: str) -> dict[str, ServerEndpoint]:
    """``AGENTKUBE_MCP_SERVERS`` read back; ValueError naming the problem if it is malformed."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object of server name -> {url, headers}")
    servers: dict[str, ServerEndpoint] = {}
    for name, entry in doc.items():
        url = entry.get("url") if isinstance(entry, dict) else None
        headers = entry.get("headers", {}) if isinstance(entry, dict) else None
        if not isinstance(url, str) or mcp_server_url(f"{MCP_SCHEME}{url}") is None:
            raise ValueError(f"server {name!r}: no http(s) url")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError(f"server {name!r}: headers must map header names to variable names")
        servers[name] = ServerEndpoint(url=url, header_env=headers)
    return servers
