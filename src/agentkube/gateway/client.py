"""The sandbox contract over HTTP: a :class:`~agentkube.sandbox.contract.Sandbox` on a gateway.

An agent in a cluster holds no Kubernetes credentials; it sends each request to the sandbox gateway
(``AGENTKUBE_SANDBOX_URL``) with its projected ServiceAccount token as a Bearer token. The token
file is read again for every request because the kubelet rotates projected tokens in place.
Gateway answers map back to the contract's exceptions (422 → SandboxRequestError, 429 →
SandboxBusy, 401/403 → SandboxRefused, 5xx and connection errors → SandboxFailure /
SandboxUnavailable), so the agent's tools do not care which backend is behind the URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from agentkube.api.pod_contract import ENV_SANDBOX_TOKEN_FILE, SANDBOX_TOKEN_FILE
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult
from agentkube.sandbox.errors import (
    SandboxBusy,
    SandboxFailure,
    SandboxRefused,
    SandboxRequestError,
    SandboxUnavailable,
)
from agentkube.telemetry.propagation import inject

EXECUTIONS_PATH = "/v1/executions"
DEFAULT_TOKEN_FILE = Path(SANDBOX_TOKEN_FILE)
# Beyond the code's own timeout: scheduling, pod start-up and the way back.
RESPONSE_MARGIN_S = 60.0

TokenSource = Callable[[], str | None]


def token_from_file(path: Path) -> TokenSource:
    """Read ``path`` on every call (projected tokens are rotated in place)."""

    def read() -> str:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SandboxRefused(
                f"cannot read the sandbox gateway token {path}: {e.strerror}; mount the projected "
                f"ServiceAccount token (docs/gateway-auth.md) or set {ENV_SANDBOX_TOKEN_FILE}"
            ) from e

    return read


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200] or response.reason_phrase


class RemoteSandbox:
    """Runs requests through a sandbox gateway at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._client = httpx.AsyncClient(
            base_url=self.url,
            transport=transport,
            timeout=httpx.Timeout(connect_timeout_s, read=None),
        )

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        headers = inject({"content-type": "application/json"})  # the caller's trace goes along
        token = self._token() if self._token is not None else None
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            response = await self._client.post(
                EXECUTIONS_PATH,
                content=request.model_dump_json(),
                headers=headers,
                timeout=httpx.Timeout(10.0, read=request.limits.timeout_s + RESPONSE_MARGIN_S),
            )
        except httpx.TransportError as e:
            raise SandboxUnavailable(
                f"the sandbox gateway at {self.url} is unreachable: {e!r}"
            ) from e
        return self._result(response)

    def _result(self, response: httpx.Response) -> ExecutionResult:
        status = response.status_code
        if status == 200:
            try:
                return ExecutionResult.model_validate_json(response.content)
            except ValueError as e:
                raise SandboxFailure(f"the sandbox gateway sent an invalid result: {e}") from e
        detail = _detail(response)
        if status in (401, 403):
            raise SandboxRefused(f"the sandbox gateway at {self.url} refused us: {detail}")
        if status == 429:
            retry = response.headers.get("retry-after", "1")
            raise SandboxBusy(detail, retry_after_s=float(retry) if retry.isdigit() else 1.0)
        if status in (400, 413, 422):
            raise SandboxRequestError(detail)
        if status == 503:
            raise SandboxUnavailable(f"the sandbox gateway cannot run sandboxes: {detail}")
        raise SandboxFailure(f"the sandbox gateway answered {status}: {detail}")

    async def aclose(self) -> None:
        await self._client.aclose()
        # Let the closed sockets' transports finish closing before a caller ends its loop.
        await asyncio.sleep(0.01)
