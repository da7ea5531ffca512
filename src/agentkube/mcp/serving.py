"""Serving an MCP server over stdio or streamable HTTP (``agentkube sandbox mcp``)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import uvicorn
from mcp.server.mcpserver import MCPServer

from agentkube.mcp.errors import McpConfigError

MCP_PATH = "/mcp"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); port 0 picks a free one."""
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise McpConfigError(
            f"--http {value!r} must be HOST:PORT, for example 127.0.0.1:8765 (port 0 picks one)"
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise McpConfigError(f"--http {host}:{port}: cannot listen there ({e})") from e
    return sock


async def serve_stdio(server: MCPServer) -> None:
    """Serve on stdin/stdout until the client closes stdin."""
    await server.run_stdio_async()


async def serve_http(
    server: MCPServer, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until SIGINT/SIGTERM; ``announce``
    gets the URL once the socket listens (so port 0 is usable)."""
    sock = _listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    announce(f"http://{shown}:{bound_port}{MCP_PATH}")
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
