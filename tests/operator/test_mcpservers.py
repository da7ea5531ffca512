"""MCPServers without a cluster: the image server's objects, what an Agent's mcp:<name> renders,
and the reconcile over a recording writer listing the tools of a real MCP server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentkube.api.mcp import decode_servers
from agentkube.api.mcpservers import HeadersFrom, MCPServer
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.mcp_discovery import DiscoveryFailed, list_tools
from agentkube.operator.mcpservers import render_mcpserver, resolve_servers, server_url
from agentkube.operator.reconciling import Reconciler
from agentkube.operator.rendering import render_agent
from tests.operator.conftest import agent
from tests.operator.test_reconcile_core import RecordingWriter
from tests.standins.mcp_server import mcp_server

CONFIG = OperatorConfig()
JSON = dict[str, Any]


def mcpserver(name: str = "tools", **spec: Any) -> MCPServer:
    return MCPServer.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "MCPServer",
            "metadata": {"name": name, "uid": "uid-s", "generation": 1},
            "spec": spec or {"image": "ghcr.io/example/mcp:1", "port": 8000},
        }
    )


def by_kind(children: list[JSON]) -> dict[str, JSON]:
    return {c["kind"]: c for c in children}


def test_an_image_server_runs_locked_down_behind_a_service() -> None:
    children = by_kind(render_mcpserver(mcpserver(), "team-a", CONFIG))
    assert set(children) == {"Deployment", "Service", "NetworkPolicy"}
    for child in children.values():
        assert child["metadata"]["name"] == "tools-mcp"
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("MCPServer", "uid-s", True)
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert container["ports"] == [{"name": "mcp", "containerPort": 8000, "protocol": "TCP"}]
    service = children["Service"]["spec"]
    assert service["ports"][0]["port"] == 8000
    assert service["selector"] == {
        "ai.openvn/mcpserver": "tools",
        "app.kubernetes.io/component": "mcp-server",
    }
    ingress = children["NetworkPolicy"]["spec"]
    assert ingress["policyTypes"] == ["Ingress"]
    assert ingress["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_url_and_command_servers_have_no_children_and_only_image_and_url_have_a_url() -> None:
    remote = mcpserver(url="https://mcp.example.com/mcp")
    local = mcpserver(command="npx")
    assert render_mcpserver(remote, "ns", CONFIG) == []
    assert render_mcpserver(local, "ns", CONFIG) == []
    assert server_url(remote, "ns") == "https://mcp.example.com/mcp"
    assert server_url(local, "ns") is None
    assert server_url(mcpserver(), "ns") == "http://tools-mcp.ns.svc:8000/mcp"


def test_an_agent_gets_the_urls_and_header_secrets_of_the_servers_it_names() -> None:
    remote = mcpserver(
        "docs",
        url="https://docs.example.com/mcp",
        headersFrom={"secretName": "docs-auth", "headers": {"Authorization": "token"}},
    )
    servers = {"tools": mcpserver(), "docs": remote}
    a = agent(tools=["mcp:tools", "mcp:docs"], memory="none")
    resolved, check = resolve_servers(a, "ns", servers)
    assert check is not None and check.ok
    children = by_kind(render_agent(a, "ns", None, CONFIG, mcp_servers=resolved))
    (container,) = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    endpoints = decode_servers(env["AGENTKUBE_MCP_SERVERS"]["value"])
    assert endpoints["tools"].url == "http://tools-mcp.ns.svc:8000/mcp"
    assert endpoints["docs"].url == "https://docs.example.com/mcp"
    variable = endpoints["docs"].header_env["Authorization"]
    assert env[variable]["valueFrom"] == {"secretKeyRef": {"name": "docs-auth", "key": "token"}}
    assert "token" not in env["AGENTKUBE_MCP_SERVERS"]["value"]  # a reference, not a value
    egress = children["NetworkPolicy"]["spec"]["egress"]
    pods = [r for r in egress if any("podSelector" in p for p in r["to"])]
    to_tools = [
        r for r in pods if r["to"][0]["podSelector"]["matchLabels"].get("ai.openvn/mcpserver")
    ]
    assert [
        (r["to"][0]["podSelector"]["matchLabels"]["ai.openvn/mcpserver"], r["ports"])
        for r in to_tools
    ] == [("tools", [{"protocol": "TCP", "port": 8000}])]
    anywhere = [r["ports"] for r in egress if any("ipBlock" in p for p in r["to"])]
    assert anywhere == [[{"protocol": "TCP", "port": 443}]]


def test_an_agent_naming_no_server_or_a_local_one_gets_a_condition_and_no_egress() -> None:
    a = agent(tools=["mcp:missing"], memory="none")
    resolved, check = resolve_servers(a, "ns", {})
    assert resolved == [] and check is not None
    assert (check.ok, check.reason) == (False, "McpServerNotFound")
    assert "no MCPServer missing in namespace ns" in check.message
    local = agent(tools=["mcp:tools"], memory="none")
    _, check = resolve_servers(local, "ns", {"tools": mcpserver(command="npx")})
    assert check is not None and check.reason == "McpServerNotRunnable"
    plain = agent(tools=["python-interpreter"])
    assert resolve_servers(plain, "ns", {}) == ([], None)
    children = by_kind(render_agent(a, "ns", None, CONFIG, mcp_servers=[]))
    (container,) = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["AGENTKUBE_MCP_SERVERS"]) == {}
    assert not any(
        "ipBlock" in p for r in children["NetworkPolicy"]["spec"]["egress"] for p in r["to"]
    )


# --------------------------------------------------------------------------- reconcile


class LoopbackDiscovery:
    """The operator's tool listing (the official MCP client) without a Secret store."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(
        self, namespace: str, url: str, headers_from: HeadersFrom | None
    ) -> list[str]:
        self.calls += 1
        return await list_tools(url, {}, timeout_s=5)


@pytest.fixture
def loopback_url() -> Iterator[str]:
    with mcp_server() as url:
        yield url


def _reconciler(spec: JSON) -> tuple[Reconciler, Cache, RecordingWriter, LoopbackDiscovery]:
    cache, writer, discovery = Cache(), RecordingWriter(), LoopbackDiscovery()
    body = mcpserver(**spec).model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"].update(namespace="team-a", resourceVersion="1")
    cache.put(body, "MCPServer")
    return (
        Reconciler(cache=cache, applier=writer, config=CONFIG, discover=discovery),
        cache,
        writer,
        discovery,
    )


def conditions(status: JSON) -> dict[str, JSON]:
    return {c["type"]: c for c in status["conditions"]}


async def test_a_url_server_gets_its_tools_in_the_status_and_a_rerun_writes_nothing(
    loopback_url: str,
) -> None:
    reconciler, _, writer, discovery = _reconciler({"url": loopback_url})
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is False
    (status,) = writer.statuses
    assert status["url"] == loopback_url
    assert status["tools"] == ["add", "search", "explode", "slow", "flood"]
    assert conditions(status)["Ready"]["status"] == "True"
    before = sum(writer.writes.values())
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is False
    assert discovery.calls == 2  # it listed again ...
    assert sum(writer.writes.values()) == before  # ... and wrote nothing


async def test_a_server_that_does_not_answer_is_not_ready_says_why_and_is_retried() -> None:
    with mcp_server() as url:
        pass  # the port is closed again
    reconciler, _, writer, _ = _reconciler({"url": url})
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is True
    ready = conditions(writer.statuses[0])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DiscoveryFailed")
    assert ready["message"].startswith(f"cannot list the tools of {url} (")
    assert "\n" not in ready["message"]
    assert writer.writes["create Event"] == 1


async def test_an_image_server_is_listed_only_once_its_deployment_is_available() -> None:
    reconciler, _, writer, discovery = _reconciler({"image": "ghcr.io/example/mcp:1", "port": 8000})
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is False
    assert sorted(writer.applied) == ["Deployment", "NetworkPolicy", "Service"]
    assert discovery.calls == 0
    ready = conditions(writer.statuses[0])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Pending")


async def test_an_image_server_switched_to_a_url_leaves_nothing_running(loopback_url: str) -> None:
    reconciler, cache, writer, _ = _reconciler({"image": "ghcr.io/example/mcp:1", "port": 8000})
    await reconciler.reconcile("MCPServer", "team-a", "tools")
    body = cache.get("MCPServer", "team-a", "tools")
    assert body is not None
    cache.put({**body, "spec": {"url": loopback_url}})
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is False
    deleted = {w for w in writer.writes if w.startswith("delete")}
    assert deleted == {"delete Deployment", "delete Service", "delete NetworkPolicy"}
    assert cache.get("Deployment", "team-a", "tools-mcp") is None
    assert writer.statuses[-1]["tools"] == ["add", "search", "explode", "slow", "flood"]


async def test_a_command_server_is_reported_as_local_only() -> None:
    reconciler, _, writer, discovery = _reconciler({"command": "npx"})
    assert await reconciler.reconcile("MCPServer", "team-a", "tools") is False
    assert writer.applied == [] and discovery.calls == 0
    ready = conditions(writer.statuses[0])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "LocalOnly")


async def test_discovery_failures_are_one_sentence() -> None:
    with pytest.raises(
        DiscoveryFailed, match=r"^cannot list the tools of http://127\.0\.0\.1:1/mcp \("
    ):
        await list_tools("http://127.0.0.1:1/mcp", {}, timeout_s=2)
