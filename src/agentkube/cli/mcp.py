"""``agentkube sandbox mcp``: the sandbox as an MCP server, for any MCP client.

Over stdio by default (what desktop clients launch), or streamable HTTP with
``--http HOST:PORT`` (served at ``/mcp``). The tools ``run_python`` and ``run_bash`` take
``code`` and an optional ``timeout_seconds`` and return what ``agentkube sandbox exec --json``
prints; ``--timeout``, ``--memory`` and ``--cpu`` mean what they mean for ``exec``, and a
call's ``timeout_seconds`` may only shorten ``--timeout``.
"""

from __future__ import annotations

import asyncio

import typer

from agentkube.sandbox.contract import Limits
from agentkube.sandbox.requests import build_limits


def serve(
    http: str | None = typer.Option(
        None, "--http", metavar="HOST:PORT", help="serve streamable HTTP instead of stdio"
    ),
    timeout: str | None = typer.Option(
        None, "--timeout", metavar="SECONDS", help="per-call timeout, and its maximum"
    ),
    memory: str | None = typer.Option(None, "--memory", metavar="SIZE", help="e.g. 128Mi, 1Gi"),
    cpu: str | None = typer.Option(None, "--cpu", metavar="CORES", help="e.g. 0.5, 500m"),
) -> None:
    """Serve the sandbox as an MCP server (tools run_python, run_bash)."""
    from agentkube.mcp.serving import is_loopback, parse_address

    limits = build_limits(timeout, memory, cpu)
    address = parse_address(http) if http is not None else None
    if address is not None and not is_loopback(address[0]):
        typer.echo(
            f"warning: {address[0]} is not a loopback address and this server has no "
            "authentication: anyone who can reach it can run code in the sandbox",
            err=True,
        )
    asyncio.run(_serve(limits, address))


async def _serve(limits: Limits, address: tuple[str, int] | None) -> None:
    from agentkube.mcp.sandbox_server import create_server
    from agentkube.mcp.serving import serve_http, serve_stdio
    from agentkube.sandbox.local import LocalSandbox

    sandbox = LocalSandbox()
    try:
        server = create_server(sandbox, limits)
        if address is None:
            await serve_stdio(server)
        else:
            host, port = address
            await serve_http(
                server, host, port, lambda url: typer.echo(f"serving MCP at {url}", err=True)
            )
    finally:
        await sandbox.aclose()
