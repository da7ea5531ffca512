"""The gateway's /mcp endpoint: MCP clients with a gateway token run code through the gateway's
backend (here the real local sandbox), under the same authentication and per-agent quota."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.gateway.conftest import Gateway
from tests.mcp.helpers import structured, text_of

pytestmark = pytest.mark.sandbox

MCP_ACCEPT = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}


@asynccontextmanager
async def mcp_client(gateway: Gateway, token: str) -> AsyncIterator[Client]:
    """The official SDK's client on the gateway's /mcp, sending ``token``."""
    headers = {"authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
        async with Client(transport) as client:
            yield client


async def test_an_mcp_client_with_a_token_runs_code_through_the_gateway(
    local_gateway: Gateway,
) -> None:
    async with mcp_client(local_gateway, "token-of-agent-a") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        ran = structured(await client.call_tool("run_python", {"code": "print(6 * 7)"}))
        slow = structured(
            await client.call_tool("run_bash", {"code": "sleep 20", "timeout_seconds": 1})
        )
    assert names == {"run_python", "run_bash"}
    assert (ran["exit_code"], ran["stdout"]) == (0, "42\n")
    assert slow["killed_reason"] == "timeout"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer not-a-token"}])
async def test_mcp_without_a_valid_token_is_refused_before_any_mcp(
    local_gateway: Gateway, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{local_gateway.url}/mcp",
            json=INITIALIZE,
            headers={**headers, "accept": MCP_ACCEPT},
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Bearer token is required" in response.json()["detail"]


@pytest.mark.parametrize("local_gateway", [1], indirect=True)
async def test_mcp_calls_count_against_the_callers_quota(local_gateway: Gateway) -> None:
    async with (
        mcp_client(local_gateway, "token-of-agent-a") as first,
        mcp_client(local_gateway, "token-of-agent-a") as second,
        mcp_client(local_gateway, "token-of-agent-b") as other,
    ):
        sleeper = asyncio.create_task(
            first.call_tool("run_python", {"code": "import time\ntime.sleep(3)\nprint('slept')"})
        )
        await asyncio.sleep(1.5)
        refused = await second.call_tool("run_python", {"code": "print(1)"})
        allowed = structured(await other.call_tool("run_python", {"code": "print(2)"}))
        slept = structured(await sleeper)
    assert refused.is_error
    assert "agent-a already runs 1 sandbox executions" in text_of(refused)
    assert allowed["stdout"] == "2\n"
    assert slept["stdout"] == "slept\n"
