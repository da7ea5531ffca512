"""The gateway client in process (httpx MockTransport): every answer maps to the contract."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from agentkube.gateway.client import EXECUTIONS_PATH, RemoteSandbox
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult
from agentkube.sandbox.errors import (
    SandboxBusy,
    SandboxFailure,
    SandboxRefused,
    SandboxRequestError,
    SandboxUnavailable,
)

Handler = Callable[[httpx.Request], httpx.Response]
REQUEST = ExecutionRequest(code="print(1)")


async def _execute(handler: Handler, token: str | None = "tok") -> ExecutionResult:
    sandbox = RemoteSandbox(
        "http://gateway.test", token=lambda: token, transport=httpx.MockTransport(handler)
    )
    try:
        return await sandbox.execute(REQUEST)
    finally:
        await sandbox.aclose()


async def test_a_result_comes_back_with_the_bearer_token_sent() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        result = ExecutionResult(exit_code=0, stdout="1\n", stderr="", duration_ms=3.0)
        return httpx.Response(200, content=result.model_dump_json())

    result = await _execute(ok)
    assert result.stdout == "1\n"
    (request,) = seen
    assert request.url.path == EXECUTIONS_PATH
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content)["code"] == "print(1)"


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "message"),
    [
        (401, {"detail": "no token"}, {}, SandboxRefused, "refused us: no token"),
        (403, {"detail": "not allowed"}, {}, SandboxRefused, "not allowed"),
        (429, {"detail": "quota"}, {"retry-after": "7"}, SandboxBusy, "quota"),
        (422, {"detail": "limits.cpu: too big"}, {}, SandboxRequestError, "limits.cpu"),
        (413, {"detail": "body too large"}, {}, SandboxRequestError, "too large"),
        (503, {"detail": "no cluster"}, {}, SandboxUnavailable, "cannot run sandboxes"),
        (500, {"detail": "boom"}, {}, SandboxFailure, "answered 500: boom"),
        (502, "bad gateway page", {}, SandboxFailure, "answered 502: bad gateway page"),
    ],
)
async def test_each_gateway_status_maps_to_the_contracts_error(
    status: int,
    body: object,
    headers: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    with pytest.raises(error, match=message) as caught:
        await _execute(answer)
    if isinstance(caught.value, SandboxBusy):
        assert caught.value.retry_after_s == 7.0


async def test_an_invalid_result_is_a_sandbox_failure() -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"exit_code": "not a number"')

    with pytest.raises(SandboxFailure, match="invalid result"):
        await _execute(garbage)


async def test_an_unreachable_gateway_is_unavailable_not_a_crash() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(SandboxUnavailable, match=r"gateway.test is unreachable"):
        await _execute(refuse)


async def test_no_token_sends_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"detail": "a valid Bearer token is required"})

    with pytest.raises(SandboxRefused):
        await _execute(refuse, token=None)
    assert "authorization" not in seen[0].headers
