"""``mcp:`` tools: an MCP server's tools, through pydantic-ai's MCPToolset.

Each server is one :class:`~pydantic_ai.mcp.MCPToolset` (the FastMCP client on the official SDK,
which negotiates the protocol revision down as the server needs): ``mcp:<url>`` and a named
MCPServer with a URL over streamable HTTP, a named MCPServer with a ``command`` over stdio (see
:mod:`agentkube.runtime.mcp_servers`). Its tools are prefixed with a name derived from the URL
(``docs_example_com_search``) or the MCPServer's name (``github_search``), unique per agent, so
two servers cannot collide with each other or with the built-in tools.

What comes back is untrusted input: every call is recorded like a built-in tool's, bounded in time
(``call_timeout_s``) and size (``max_result_chars``, head and tail kept), and a tool's error, a
protocol error or a timeout reaches the model as a failed tool result it can react to
(``ToolFailed``), never as the run's failure. A server that does not answer at start is left out
with one line naming it and why; the agent runs with its other tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastmcp.client.transports import StdioTransport
from pydantic_ai import RunContext, ToolFailed
from pydantic_ai.mcp import CallToolFunc, MCPToolset, ProcessToolCallback, ToolResult
from pydantic_ai.toolsets import AbstractToolset

from agentkube.api.mcp import mcp_server_url
from agentkube.runtime.mcp_servers import NamedServer, NamedServers
from agentkube.runtime.recording import ToolRecorder

log = logging.getLogger("agentkube.runtime.mcp")

PREFIX_CHARS = 32


@dataclass(frozen=True, kw_only=True)
class McpSettings:
    connect_timeout_s: float = 10.0
    call_timeout_s: float = 60.0
    max_result_chars: int = 16_000
    max_retries: int = 3


def server_prefixes(keys: Sequence[str]) -> dict[str, str]:
    """A tool-name prefix per server URL (its host and port) or MCPServer name, made a name,
    unique in order."""
    prefixes: dict[str, str] = {}
    for url in keys:
        where = urlsplit(url).netloc.rpartition("@")[2] if "://" in url else url
        base = re.sub(r"[^A-Za-z0-9]+", "_", where).strip("_").lower()
        if not base or base[0].isdigit():
            base = f"mcp_{base}"
        base = base[:PREFIX_CHARS].rstrip("_")
        prefix, n = base, 2
        while prefix in prefixes.values():
            prefix, n = f"{base}_{n}", n + 1
        prefixes[url] = prefix
    return prefixes


def capped(value: ToolResult, max_chars: int) -> tuple[ToolResult, str]:
    """What the model gets of a result, and its text for the record: head and tail if too long."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(text) <= max_chars:
        return value, text
    half = max_chars // 2
    cut = f"{text[:half]}\n… [result cut: {len(text)} chars, {max_chars} kept] …\n{text[-half:]}"
    return cut, cut


def recording_call(name: str, settings: McpSettings) -> ProcessToolCallback:
    """The hook around every call to one server: record, bound in time, cap in size."""

    async def call(
        ctx: RunContext[Any], call_tool: CallToolFunc, tool: str, args: dict[str, Any]
    ) -> ToolResult:
        recorder: ToolRecorder = ctx.deps.recorder
        async with recorder.call(f"{name}_{tool}", args) as record:
            try:
                async with asyncio.timeout(settings.call_timeout_s):
                    result = await call_tool(tool, args)
            except TimeoutError as e:
                raise ToolFailed(
                    f"the MCP tool {tool!r} did not answer within {settings.call_timeout_s:g} s"
                ) from e
            value, record.result = capped(result, settings.max_result_chars)
            return value

    return call


def mcp_toolset(
    url: str, prefix: str, settings: McpSettings, named: NamedServer | None = None
) -> MCPToolset[Any]:
    """The toolset of ``mcp:<url>``, or of a named server (its URL and headers, or its command)."""
    if named is not None and named.command is not None:
        client: str | StdioTransport = StdioTransport(
            named.command, list(named.args), env=dict(named.env)
        )
    else:
        client = url
    headers = dict(named.headers) if named is not None and named.headers else None
    return MCPToolset(
        client,
        id=prefix,
        headers=headers,
        tool_error_behavior="failed",
        process_tool_call=recording_call(prefix, settings),
        max_retries=settings.max_retries,
        init_timeout=settings.connect_timeout_s,
        read_timeout=settings.call_timeout_s + settings.connect_timeout_s,
    )


@dataclass
class McpTools:
    """The connected servers' toolsets, and one line for each server left out."""

    toolsets: list[AbstractToolset[Any]] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


def _reason(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


async def _connect(toolset: MCPToolset[Any], stack: AsyncExitStack, settings: McpSettings) -> int:
    async with asyncio.timeout(settings.connect_timeout_s * 2):
        await stack.enter_async_context(toolset)
        return len(await toolset.list_tools())


@asynccontextmanager
async def open_mcp_tools(
    tools: Sequence[str], settings: McpSettings, named: NamedServers | None = None
) -> AsyncIterator[McpTools]:
    """Connect to the ``mcp:<url>`` servers among ``tools`` and to the ``named`` servers of its
    ``mcp:<name>`` tools; disconnect on exit."""
    urls = [url for tool in tools if (url := mcp_server_url(tool)) is not None]
    by_name = named.servers if named is not None else {}
    found = McpTools(unavailable=list(named.unavailable) if named is not None else [])
    for line in found.unavailable:
        log.warning("warning: %s", line)
    async with AsyncExitStack() as stack:
        for key, prefix in server_prefixes([*urls, *by_name]).items():
            server = by_name.get(key) if key not in urls else None
            url = key if server is None else server.url or ""
            toolset = mcp_toolset(url, prefix, settings, server)
            tool = f"mcp:{key}" if server is None else server.tool
            try:
                count = await _connect(toolset, stack, settings)
            except Exception as e:  # any failure to connect leaves this server out, not the agent
                line = (
                    f"tool {tool!r} is unavailable: the MCP server did not answer "
                    f"({_reason(e)}); the agent runs without its tools"
                )
                log.warning("warning: %s", line)
                found.unavailable.append(line)
                continue
            log.info("%s: %d tools, named %s_<tool>", tool, count, prefix)
            found.toolsets.append(toolset.prefixed(prefix))
        yield found
