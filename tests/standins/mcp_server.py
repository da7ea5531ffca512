"""A third-party MCP server written with the official SDK, for agents to use on loopback.

Its tools cover what an agent must survive: arguments of several types, a tool that fails, a
tool slower than any sensible timeout, and a result far larger than a model's context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.standins.serving import serve

OVERSIZED_CHARS = 200_000


def create_server(name: str = "standin-tools") -> MCPServer:
    server: MCPServer = MCPServer(name, log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def search(query: str, limit: int = 3) -> list[str]:
        """Search the catalogue; returns up to `limit` titles."""
        return [f"{query} #{n}" for n in range(1, limit + 1)]

    @server.tool()
    def explode(reason: str) -> str:
        """Always fails, with the given reason."""
        raise ToolError(f"exploded: {reason}")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answers after `seconds`."""
        await asyncio.sleep(seconds)
        return "finally"

    @server.tool()
    def flood() -> str:
        """Returns a result far larger than any model context."""
        return "x" * (OVERSIZED_CHARS - 3) + "END"

    return server


@contextmanager
def mcp_server(name: str = "standin-tools") -> Iterator[str]:
    """Serve the stand-in over streamable HTTP on loopback; yield its URL (``.../mcp``)."""
    app = create_server(name).streamable_http_app(streamable_http_path="/mcp")
    with serve(app) as base:
        yield f"{base}/mcp"


if __name__ == "__main__":  # `python -m tests.standins.mcp_server`: the same tools over stdio
    create_server("standin-stdio").run("stdio")
