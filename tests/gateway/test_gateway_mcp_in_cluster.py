"""The gateway's /mcp on the real control plane: an MCP client holding an agent's projected-style
ServiceAccount token (TokenReview on the real API server) runs code as a Job per call."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from agentkube.api.pod_contract import SANDBOX_GATEWAY_AUDIENCE
from agentkube.sandbox.kubernetes.rendering import PodSettings
from tests.gateway.conftest import Gateway
from tests.gateway.test_gateway_in_cluster import _agent_token, _gateway
from tests.gateway.test_gateway_mcp import INITIALIZE, MCP_ACCEPT, mcp_client
from tests.mcp.helpers import structured
from tests.plugins.testcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]


@pytest.fixture
def cluster_gateway(testcluster: Cluster, gvisor_pod_settings: PodSettings) -> Iterator[Gateway]:
    with _gateway(testcluster, gvisor_pod_settings) as url:
        yield Gateway(url)


async def test_an_mcp_client_with_an_agent_token_runs_code_in_a_job(
    testcluster: Cluster, cluster_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentkube.gateway.mcp")
    token, identity = _agent_token(testcluster, SANDBOX_GATEWAY_AUDIENCE)
    async with mcp_client(cluster_gateway, token) as client:
        result = structured(
            await client.call_tool("run_python", {"code": "import os\nprint(os.getcwd(), 2**8)"})
        )
    assert result["exit_code"] == 0, result
    assert result["stdout"].split()[-1] == "256"
    assert any(f"mcp execution by {identity}" in r.getMessage() for r in caplog.records)


async def test_a_token_for_the_api_server_is_refused_at_mcp(
    testcluster: Cluster, cluster_gateway: Gateway
) -> None:
    token, _ = _agent_token(testcluster, None)  # a token for the API server, not for the gateway
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{cluster_gateway.url}/mcp",
            json=INITIALIZE,
            headers={"authorization": f"Bearer {token}", "accept": MCP_ACCEPT},
        )
    assert response.status_code == 401
    assert "Bearer token is required" in response.json()["detail"]
