"""The gateway over real HTTP on loopback, in front of the real local sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx
import pytest

from agentkube.gateway.client import RemoteSandbox
from agentkube.runtime.building import RuntimeSettings, open_sandbox
from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.errors import SandboxBusy, SandboxRefused, SandboxRequestError
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.sandbox


def _client(gateway: Gateway, token: str | None = "token-of-agent-a") -> RemoteSandbox:
    return RemoteSandbox(gateway.url, token=lambda: token)


async def test_result_round_trips_through_the_gateway(local_gateway: Gateway) -> None:
    sandbox = _client(local_gateway)
    try:
        result = await sandbox.execute(
            ExecutionRequest(
                code="import sys\nprint(open('data.txt').read().upper())\n"
                "print('oops', file=sys.stderr)\nraise SystemExit(3)",
                files={"data.txt": "hello"},
            )
        )
    finally:
        await sandbox.aclose()
    assert result.exit_code == 3
    assert result.stdout == "HELLO\n"
    assert result.stderr == "oops\n"
    assert result.killed_reason is None


async def test_timeout_comes_back_as_the_killed_reason(local_gateway: Gateway) -> None:
    sandbox = _client(local_gateway)
    try:
        result = await sandbox.execute(
            ExecutionRequest(code="while True: pass", limits=Limits(timeout_s=0.5))
        )
    finally:
        await sandbox.aclose()
    assert result.killed_reason == "timeout"
    assert result.exit_code is None


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_unauthenticated_requests_are_refused(
    local_gateway: Gateway, token: str | None
) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{local_gateway.url}/v1/executions", json={"code": "print(1)"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Bearer token" in response.json()["detail"]
    sandbox = _client(local_gateway, token)
    try:
        with pytest.raises(SandboxRefused, match="refused us"):
            await sandbox.execute(ExecutionRequest(code="print(1)"))
    finally:
        await sandbox.aclose()


@pytest.mark.parametrize("local_gateway", [1], indirect=True)
async def test_exceeding_the_per_agent_quota_gets_429_with_a_clear_message(
    local_gateway: Gateway,
) -> None:
    a, a_again, b = (
        _client(local_gateway),
        _client(local_gateway),
        _client(local_gateway, "token-of-agent-b"),
    )
    slow = asyncio.create_task(a.execute(ExecutionRequest(code="import time; time.sleep(2)")))
    try:
        await asyncio.sleep(0.8)  # the slow one holds agent-a's only slot
        response = httpx.post(
            f"{local_gateway.url}/v1/executions",
            json={"code": "print(1)"},
            headers={"authorization": "Bearer token-of-agent-a"},
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        detail = response.json()["detail"]
        assert "agent-a already runs 1 sandbox executions" in detail
        assert "--max-concurrent-per-agent 1" in detail
        with pytest.raises(SandboxBusy, match="agent-a"):
            await a_again.execute(ExecutionRequest(code="print(1)"))
        other = await b.execute(ExecutionRequest(code="print('b runs')"))
        assert other.stdout == "b runs\n"  # another agent's quota is its own
        assert (await slow).exit_code == 0
        after = await a_again.execute(ExecutionRequest(code="print('again')"))
        assert after.stdout == "again\n"  # the slot came back
    finally:
        for client in (a, a_again, b):
            await client.aclose()


def _processes_running(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("local_gateway", [1], indirect=True)
async def test_a_caller_that_goes_away_cancels_its_execution_and_frees_its_slot(
    local_gateway: Gateway,
) -> None:
    # The code would run for a minute; its caller gives up once it runs. The sandbox must go at
    # once and agent-a's only slot must come back, not after the code's 30 s timeout.
    marker = "sleep_for_the_abandoned_request"
    # exec with the marker in argv, so the host sees it in /proc/<pid>/cmdline
    code = (
        "import os, sys\n"
        "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}'])"
    )
    url, auth = f"{local_gateway.url}/v1/executions", {"authorization": "Bearer token-of-agent-a"}
    async with httpx.AsyncClient(timeout=120) as client:
        call = asyncio.create_task(client.post(url, json={"code": code}, headers=auth))
        for _ in range(200):
            if _processes_running(marker):
                break
            await asyncio.sleep(0.05)
        assert _processes_running(marker), "the code runs"
        call.cancel()  # the caller gives up: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await call
    sandbox = _client(local_gateway)
    try:
        for _ in range(100):  # the gateway looks for a gone caller twice a second
            if not _processes_running(marker):
                break
            await asyncio.sleep(0.05)
        assert _processes_running(marker) == []
        after = await sandbox.execute(ExecutionRequest(code="print('slot is free')"))
        assert after.stdout == "slot is free\n"
    finally:
        await sandbox.aclose()


async def test_invalid_request_is_refused_naming_the_field(local_gateway: Gateway) -> None:
    response = httpx.post(
        f"{local_gateway.url}/v1/executions",
        json={"code": "print(1)", "limits": {"memory_bytes": 1}},
        headers={"authorization": "Bearer token-of-agent-a"},
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid execution request: limits.memory_bytes")
    raw = httpx.post(
        f"{local_gateway.url}/v1/executions",
        json={"code": "x", "language": "cobol"},
        headers={"authorization": "Bearer token-of-agent-a"},
    )
    sandbox = _client(local_gateway)
    try:
        with pytest.raises(SandboxRequestError, match="language"):
            sandbox._result(raw)  # the client turns the 422 back into the contract's error
    finally:
        await sandbox.aclose()


async def test_every_execution_is_logged_with_the_agents_identity(
    local_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentkube.gateway")
    sandbox = _client(local_gateway, "token-of-agent-b")
    try:
        await sandbox.execute(ExecutionRequest(code="print(1)"))
    finally:
        await sandbox.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "agentkube.gateway"]
    assert any(" by agent-b: python " in line and "exit=0" in line for line in lines), lines


async def test_runtime_uses_the_gateway_when_the_operator_sets_its_url(
    local_gateway: Gateway, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("token-of-agent-a\n")
    settings = RuntimeSettings(
        environ={
            "AGENTKUBE_SANDBOX_URL": local_gateway.url,
            "AGENTKUBE_SANDBOX_TOKEN_FILE": str(token_file),
        }
    )
    sandbox = open_sandbox(settings)
    try:
        assert isinstance(sandbox, RemoteSandbox)
        result = await sandbox.execute(ExecutionRequest(code="print(6 * 7)"))
        assert result.stdout == "42\n"
        token_file.write_text("rotated-to-something-invalid\n")  # read again on every request
        with pytest.raises(SandboxRefused):
            await sandbox.execute(ExecutionRequest(code="print(1)"))
    finally:
        await sandbox.aclose()


async def test_runtime_without_a_gateway_url_uses_the_local_sandbox() -> None:
    from agentkube.sandbox.local import LocalSandbox

    sandbox = open_sandbox(RuntimeSettings(environ={}))
    try:
        assert isinstance(sandbox, LocalSandbox)
    finally:
        await sandbox.aclose()


async def test_missing_token_file_names_the_file_and_the_fix(local_gateway: Gateway) -> None:
    settings = RuntimeSettings(
        environ={
            "AGENTKUBE_SANDBOX_URL": local_gateway.url,
            "AGENTKUBE_SANDBOX_TOKEN_FILE": "/nonexistent/token",
        }
    )
    sandbox = open_sandbox(settings)
    try:
        with pytest.raises(SandboxRefused, match=r"/nonexistent/token.*docs/gateway-auth\.md"):
            await sandbox.execute(ExecutionRequest(code="print(1)"))
    finally:
        await sandbox.aclose()
