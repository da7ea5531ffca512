"""The gateway's MCP endpoint: ``/mcp``, the sandbox's ``run_python`` / ``run_bash`` for MCP
clients that hold a gateway token.

The same tools as ``agentkube sandbox mcp`` (:mod:`agentkube.mcp.sandbox_server`), in front of the
gateway's backend (in a cluster: one Job or warm pod per call), behind the gateway's own
authentication: a request without a valid Bearer token gets 401 before any MCP processing, and
each call takes a slot of the caller's concurrency quota like ``POST /v1/executions``.

Streamable HTTP runs stateless (each HTTP request stands alone), so the caller's identity, kept
in a context variable by the authenticating wrapper, is the identity of that very request: a
session id alone never carries another caller's rights. DNS-rebinding protection is off because
the credential is a Bearer token a browser cannot attach on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkube.gateway.auth import Authenticator, Identity
from agentkube.gateway.quota import ConcurrencyQuota
from agentkube.mcp.sandbox_server import create_server
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits, Sandbox
from agentkube.sandbox.errors import SandboxFailure

log = logging.getLogger("agentkube.gateway.mcp")
MCP_PATH = "/mcp"
_caller: ContextVar[Identity | None] = ContextVar("agentkube_gateway_mcp_caller", default=None)


@dataclass
class _QuotaSandbox:
    """The backend, with each call counted against its caller's quota and logged."""

    backend: Sandbox
    quota: ConcurrencyQuota

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        identity = _caller.get()
        if identity is None:  # the wrapper below always sets it; never run code anonymously
            raise SandboxFailure("an MCP call reached the sandbox without an authenticated caller")
        started = time.perf_counter()
        with self.quota.slot(identity.name):
            result = await self.backend.execute(request)
        log.info(
            "mcp execution by %s: %s %d bytes, exit=%s killed=%s in %.0f ms",
            identity.name,
            request.language,
            len(request.code),
            result.exit_code,
            result.killed_reason,
            (time.perf_counter() - started) * 1000,
        )
        return result

    async def aclose(self) -> None:
        """The gateway closes the backend itself."""


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@dataclass
class _Authenticated:
    """An ASGI app that lets only callers with a valid token through to ``inner``."""

    inner: ASGIApp
    authenticator: Authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope)
        identity = await self.authenticator.authenticate(token) if token else None
        if identity is None:
            refusal = JSONResponse(
                {"detail": "a valid Bearer token is required for /mcp (see docs/gateway-auth.md)"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="agentkube-sandbox-gateway"'},
            )
            await refusal(scope, receive, send)
            return
        reset = _caller.set(identity)
        try:
            await self.inner(scope, receive, send)
        finally:
            _caller.reset(reset)


@dataclass
class McpEndpoint:
    server: MCPServer
    route: Route

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The MCP session manager's lifetime: enter it in the gateway's lifespan."""
        async with self.server.session_manager.run():
            yield


def mcp_endpoint(
    backend: Sandbox, authenticator: Authenticator, quota: ConcurrencyQuota
) -> McpEndpoint:
    server = create_server(_QuotaSandbox(backend, quota), Limits())
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        host="0.0.0.0",  # noqa: S104
    )
    [handler] = [r.app for r in app.routes if isinstance(r, Route) and r.path == MCP_PATH]
    route = Route(
        MCP_PATH, _Authenticated(handler, authenticator), methods=["GET", "POST", "DELETE"]
    )
    return McpEndpoint(server=server, route=route)
