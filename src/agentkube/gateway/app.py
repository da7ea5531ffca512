"""The gateway's HTTP API: the sandbox contract over HTTP, for agents without cluster rights.

    POST /v1/executions   Authorization: Bearer <token>, body: ExecutionRequest JSON
                          200 ExecutionResult JSON (whatever the code's own exit code)
                          401 no or invalid token          403 caller not on the allow-list
                          413 body too large               422 invalid, or above the policy
                          429 the agent's quota is used up
                          503 the backend cannot run sandboxes here
    GET  /v1/policy       the sandbox policy: the most one execution may ask for (no token)
    GET  /healthz         200 once the backend is started (no token needed)
    GET  /metrics         Prometheus metrics (agentkube.gateway.metrics; no token)
    POST /mcp             MCP (streamable HTTP): run_python / run_bash, same token and quota
                          (agentkube.gateway.mcp_endpoint)

Every execution is logged with the caller's identity, its outcome and its duration, and traced
(a ``sandbox.execute`` server span continuing the caller's ``traceparent``, with a
``sandbox.run`` child for the code's own run as the backend measured it). A caller that
disconnects before its result cancels the execution: its sandbox is deleted, its quota slot freed.
Error bodies are ``{"detail": "<one sentence>"}``; the client turns them back into the
contract's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import secrets
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from agentkube.api.loading import describe
from agentkube.bounded_bodies import BoundedBodies
from agentkube.gateway.auth import Authenticator, Identity
from agentkube.gateway.mcp_endpoint import mcp_endpoint
from agentkube.gateway.metrics import GatewayMetrics, outcome_of
from agentkube.gateway.quota import ConcurrencyQuota
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Sandbox
from agentkube.sandbox.errors import (
    SandboxBusy,
    SandboxFailure,
    SandboxRequestError,
    SandboxUnavailable,
)
from agentkube.sandbox.policy import DEFAULT_POLICY, SandboxPolicy
from agentkube.telemetry import spans
from agentkube.telemetry.propagation import continued

log = logging.getLogger("agentkube.gateway")
EXECUTIONS_PATH = "/v1/executions"
DISCONNECT_POLL_S = 0.5  # how often a running execution checks that its caller is still there


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    max_concurrent_per_agent: int = 4
    max_body_bytes: int = 8 * 1024 * 1024
    body_read_timeout_s: float = 30.0
    policy: SandboxPolicy = DEFAULT_POLICY
    # Callers allowed to execute: ``namespace/serviceaccount`` patterns (fnmatch, e.g.
    # ``team-a/*``) matched against ``system:serviceaccount:<ns>:<name>``, or plain names of
    # static-token callers. Empty: every authenticated caller.
    allowed_callers: tuple[str, ...] = ()

    def allows(self, identity: Identity) -> bool:
        if not self.allowed_callers:
            return True
        name = identity.name
        prefix = "system:serviceaccount:"
        if name.startswith(prefix):
            name = name.removeprefix(prefix).replace(":", "/", 1)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allowed_callers)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _caller(request: Request, authenticator: Authenticator) -> Identity | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await authenticator.authenticate(token.strip())


async def _while_connected(
    request: Request, execution: Coroutine[Any, Any, ExecutionResult]
) -> ExecutionResult | None:
    """The execution's result; None if the caller disconnected first.

    Then the execution is cancelled, and a cancelled backend deletes its sandbox (the local
    cgroup, the Job or warm pod), so an abandoned request holds neither a quota slot nor a pod
    until its deadline.
    """
    work = asyncio.ensure_future(execution)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
            if done:
                return work.result()
            if await request.is_disconnected():
                return None
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work


class _Starter:
    """Starts the backend until it has started; meanwhile says why not, in one line."""

    def __init__(self, backend: Sandbox) -> None:
        self.backend = backend
        self.ready = False

    async def __call__(self) -> str | None:
        if self.ready:
            return None
        start: Any = getattr(self.backend, "start", None)
        try:
            if start is not None:
                await start()
        except (SandboxUnavailable, SandboxFailure) as e:
            return str(e)
        self.ready = True
        return None


async def _admit(
    request: Request,
    identity: Identity,
    settings: GatewaySettings,
    started: _Starter,
    metrics: GatewayMetrics,
) -> ExecutionRequest | Response:
    """The caller's request if it may run: allowed caller, bounded body, valid, within policy,
    and a backend that has started."""
    if not settings.allows(identity):
        log.warning("execution refused: %s is not on the allow-list", identity.name)
        metrics.refusals.labels("forbidden").inc()
        return _error(403, f"{identity.name} may not run sandboxes on this gateway")
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        return _error(413, f"the request is over {settings.max_body_bytes} bytes")
    try:
        checked = settings.policy.check(ExecutionRequest.model_validate_json(body))
    except ValidationError as e:
        metrics.refusals.labels("invalid").inc()
        return _error(422, f"invalid execution request: {describe(e)}")
    except SandboxRequestError as e:
        log.info("execution by %s refused by the policy: %s", identity.name, e)
        metrics.refusals.labels("policy").inc()
        return _error(422, str(e))
    reason = await started()
    if reason is not None:
        log.error("execution by %s: the sandbox backend is not started: %s", identity.name, reason)
        return _error(503, reason)
    return checked


def create_app(  # noqa: C901 - one small closure per route
    backend: Sandbox,
    authenticator: Authenticator,
    settings: GatewaySettings | None = None,
    *,
    close_backend: bool = True,
    kube_client: Any | None = None,
) -> FastAPI:
    """The gateway serving ``backend``; the app starts it (if it can) and closes it on shutdown.

    ``kube_client``: the API client the backend and the authenticator share, closed last.
    """
    settings = settings or GatewaySettings()
    quota = ConcurrencyQuota(settings.max_concurrent_per_agent)
    mcp = mcp_endpoint(backend, authenticator, quota)
    try_start = _Starter(backend)
    metrics = GatewayMetrics(backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A backend that cannot start yet (API server down, a right missing) does not stop the
        # server: it is not ready (/healthz 503 with the reason), every execution and health
        # check tries the start again, and it serves as soon as one succeeds.
        reason = await try_start()
        if reason is not None:
            log.error("the sandbox backend did not start (tried again on use): %s", reason)
        try:
            async with mcp.running():
                yield
        finally:
            try_start.ready = False
            if close_backend:
                await backend.aclose()
            if kube_client is not None:
                await kube_client.close()

    app = FastAPI(title="agentkube sandbox gateway", lifespan=lifespan)
    app.add_middleware(
        BoundedBodies,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_read_timeout_s,
    )
    app.state.quota = quota
    app.state.metrics = metrics
    app.router.routes.append(mcp.route)

    @app.get("/healthz")
    async def healthz() -> Response:
        reason = await try_start()
        if reason is not None:
            return _error(503, f"the sandbox backend is not started: {reason}")
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/policy")
    async def policy() -> JSONResponse:
        return JSONResponse(settings.policy.model_dump())

    @app.post(EXECUTIONS_PATH, response_model=None)
    async def execute(request: Request) -> Response:
        identity = await _caller(request, authenticator)
        if identity is None:
            metrics.refusals.labels("unauthenticated").inc()
            return _error(
                401,
                "a valid Bearer token is required (an agent sends its projected ServiceAccount "
                "token, see docs/gateway-auth.md)",
                {"WWW-Authenticate": 'Bearer realm="agentkube-sandbox-gateway"'},
            )
        parsed = await _admit(request, identity, settings, try_start, metrics)
        if isinstance(parsed, Response):
            return parsed
        return await _traced(
            request, parsed, identity, backend=backend, quota=quota, metrics=metrics
        )

    return app


async def _traced(
    request: Request,
    parsed: ExecutionRequest,
    identity: Identity,
    *,
    backend: Sandbox,
    quota: ConcurrencyQuota,
    metrics: GatewayMetrics,
) -> Response:
    """:func:`_run` in a ``sandbox.execute`` server span continuing the caller's trace."""
    attributes = {
        spans.SANDBOX_BACKEND: metrics.backend,
        spans.SANDBOX_LANGUAGE: parsed.language,
        spans.CALLER: identity.name,
    }
    with (
        continued(request.headers),
        spans.span("sandbox.execute", kind=spans.SpanKind.SERVER, attributes=attributes),
    ):
        started = time.perf_counter()
        response, outcome, result = await _run(request, parsed, identity, backend, quota)
        metrics.executed(outcome, time.perf_counter() - started)
        if result is not None:
            _trace_run(result)
        else:
            spans.mark_failed(outcome)
        return response


async def _run(
    request: Request,
    parsed: ExecutionRequest,
    identity: Identity,
    backend: Sandbox,
    quota: ConcurrencyQuota,
) -> tuple[Response, str, ExecutionResult | None]:
    """Run an admitted request: the response, the outcome (for the metrics) and the result."""
    execution = secrets.token_hex(6)
    started = time.perf_counter()
    try:
        with quota.slot(identity.name):
            result = await _while_connected(request, backend.execute(parsed))
        if result is None:
            log.warning(
                "execution %s by %s abandoned: the caller went away after %.0f ms; "
                "its sandbox is deleted",
                execution,
                identity.name,
                (time.perf_counter() - started) * 1000,
            )
            # nobody reads it: the connection is gone
            return Response(status_code=499), "abandoned", None
    except SandboxBusy as e:
        log.warning("execution %s by %s refused: %s", execution, identity.name, e)
        retry = {"Retry-After": str(max(1, round(e.retry_after_s)))}
        return _error(429, str(e), retry), "quota", None
    except SandboxRequestError as e:
        log.info("execution %s by %s rejected: %s", execution, identity.name, e)
        return _error(422, str(e)), "rejected", None
    except SandboxUnavailable as e:
        log.error("execution %s by %s: sandbox unavailable: %s", execution, identity.name, e)
        return _error(503, str(e)), "unavailable", None
    except SandboxFailure as e:
        log.error("execution %s by %s failed: %s", execution, identity.name, e)
        return _error(500, str(e)), "failed", None
    log.info(
        "execution %s by %s: %s %d bytes, exit=%s killed=%s truncated=%s in %.0f ms",
        execution,
        identity.name,
        parsed.language,
        len(parsed.code),
        result.exit_code,
        result.killed_reason,
        result.truncated,
        (time.perf_counter() - started) * 1000,
    )
    response = Response(result.model_dump_json(), media_type="application/json")
    return response, outcome_of(result), result


def _trace_run(result: ExecutionResult) -> None:
    """The execution span's outcome, and a ``sandbox.run`` child for the code's own run: its
    duration as the runner measured it, ending when the result arrived."""
    current = trace.get_current_span()
    current.set_attribute(
        spans.SANDBOX_EXIT_CODE, -1 if result.exit_code is None else result.exit_code
    )
    if result.killed_reason is not None:
        current.set_attribute(spans.SANDBOX_KILLED, result.killed_reason)
    end = time.time_ns()
    spans.record("sandbox.run", end - int(result.duration_ms * 1e6), end)
