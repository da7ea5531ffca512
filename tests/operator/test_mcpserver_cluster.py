"""MCPServers on the real control plane, reconciled by the operator process with deploy/'s RBAC.

kwok runs no containers, so an image server's pods never answer: its tools are listed in the
tests from a ``url`` MCPServer pointing at a real MCP server (the official SDK's) on loopback,
which the operator process on this machine reaches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkube.api.mcp import decode_servers
from tests.operator.operator_process import OperatorProcess
from tests.operator.test_cluster import ENDPOINT_MODEL, condition, env_of, get, wait_condition
from tests.plugins.testcluster import Cluster
from tests.standins.mcp_server import mcp_server

pytestmark = pytest.mark.cluster

STANDIN_TOOLS = ["add", "search", "explode", "slow", "flood"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp-servers.yaml"


def mcpserver(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "MCPServer",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def agent(name: str, tools: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": {"model": "m", "tools": tools, "memory": "none"},
        }
    )


@pytest.fixture
def loopback_url() -> Iterator[str]:
    with mcp_server() as url:
        yield url


def test_a_url_server_shows_its_tools_and_an_unchanged_one_costs_no_write(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str, loopback_url: str
) -> None:
    cluster, ns = installed, agent_namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tools-auth"},
        "data": {"token": base64.b64encode(b"Bearer s3cret").decode()},
    }
    cluster.apply(json.dumps(secret), ns)
    headers = {"secretName": "tools-auth", "headers": {"Authorization": "token"}}
    cluster.apply(mcpserver("tools", url=loopback_url, headersFrom=headers), ns)
    # The operator holds no Secret right: without the grant docs/mcp.md shows, it says so.
    refused = wait_condition(cluster, "mcpserver", "tools", ns, status="False")
    assert "may not read Secret" in (condition(refused, "Ready") or {})["message"]
    cluster.kubectl("create", "role", "mcp-headers", "--verb=get", "--resource=secrets",
                    "--resource-name=tools-auth", "-n", ns)  # fmt: skip
    cluster.kubectl("create", "rolebinding", "mcp-headers", "--role=mcp-headers",
                    "--serviceaccount=agentkube-system:agentkube-operator", "-n", ns)  # fmt: skip
    server = wait_condition(cluster, "mcpserver", "tools", ns)
    assert server["status"]["tools"] == STANDIN_TOOLS
    assert server["status"]["url"] == loopback_url
    table = cluster.kubectl("get", "mcpservers", "-n", ns).stdout
    header, row = table.splitlines()
    assert header.split()[:4] == ["NAME", "URL", "READY", "TOOLS"]
    assert row.split()[:3] == ["tools", loopback_url, "True"]
    assert '["add","search","explode","slow","flood"]' in row
    # Nothing to repair: another reconcile (a label, a resync) lists again and writes nothing.
    before = operator.settled_writes(cluster, ns)
    reconciles = operator.reconciles_of("MCPServer", ns, "tools")
    cluster.kubectl("label", "mcpserver", "tools", "-n", ns, "touched=yes")
    cluster.wait_until(
        lambda: operator.reconciles_of("MCPServer", ns, "tools") > reconciles,
        "a reconcile after the label",
        60,
    )
    assert operator.writes_in(ns) == before


def test_a_server_that_stops_answering_turns_not_ready_with_one_line(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    with mcp_server() as url:
        cluster.apply(mcpserver("flaky", url=url), ns)
        wait_condition(cluster, "mcpserver", "flaky", ns)
    # The server is gone; the next reconcile (the label) finds out.
    cluster.kubectl("label", "mcpserver", "flaky", "-n", ns, "touched=yes")
    server = wait_condition(cluster, "mcpserver", "flaky", ns, status="False")
    ready = condition(server, "Ready")
    assert ready is not None and ready["reason"] == "DiscoveryFailed"
    assert ready["message"].startswith(f"cannot list the tools of {url} (")
    assert "\n" not in ready["message"]


def test_an_image_server_runs_locked_down_and_agents_reach_exactly_what_they_name(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(mcpserver("search", image="ghcr.io/example/search-mcp:1", port=8000), ns)
    cluster.apply(agent("reader", ["mcp:search", "mcp:later"]), ns)

    def children() -> dict[str, Any] | None:
        found = {
            k: get(cluster, k, "search-mcp", ns) for k in ("deployment", "service", "networkpolicy")
        }
        return found if all(found.values()) else None

    objects = cluster.wait_until(children, "the image server's Deployment, Service and policy", 60)
    owner = objects["deployment"]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("MCPServer", "search")
    pod = objects["deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert objects["service"]["spec"]["ports"][0]["port"] == 8000
    # The namespace enforces Pod Security `restricted`: the pods were admitted and run (kwok).
    deployment = wait_condition(cluster, "mcpserver", "search", ns, "Available")
    assert deployment["status"]["url"] == f"http://search-mcp.{ns}.svc:8000/mcp"
    # kwok's pods do not serve MCP: listing fails, and says so.
    not_listed = wait_condition(cluster, "mcpserver", "search", ns, "ToolsDiscovered", "False")
    assert condition(not_listed, "Ready")["reason"] == "DiscoveryFailed"  # type: ignore[index]

    missing = wait_condition(cluster, "agent", "reader", ns, "McpServersResolved", "False")
    assert condition(missing, "McpServersResolved")["reason"] == "McpServerNotFound"  # type: ignore[index]
    dep = cluster.wait_until(lambda: get(cluster, "deployment", "reader", ns), "reader", 60)
    assert set(decode_servers(env_of(dep)["AGENTKUBE_MCP_SERVERS"])) == {"search"}
    policy = get(cluster, "networkpolicy", "reader", ns)
    assert policy is not None
    to_servers = [
        (r["to"][0]["podSelector"]["matchLabels"]["ai.openvn/mcpserver"], r["ports"][0]["port"])
        for r in policy["spec"]["egress"]
        if "ai.openvn/mcpserver" in (r["to"][0].get("podSelector") or {}).get("matchLabels", {})
    ]
    assert to_servers == [("search", 8000)]
    by_port = [r["ports"] for r in policy["spec"]["egress"] if "ipBlock" in r["to"][0]]
    assert by_port == [[{"protocol": "TCP", "port": 443}]]  # the model endpoint only

    # The missing server appears: the Agent resolves it without being touched.
    cluster.apply(mcpserver("later", url="https://later.example.com/mcp"), ns)
    wait_condition(cluster, "agent", "reader", ns, "McpServersResolved", "True")

    def both() -> dict[str, Any] | None:
        dep = get(cluster, "deployment", "reader", ns)
        names = set(decode_servers(env_of(dep)["AGENTKUBE_MCP_SERVERS"])) if dep else set()
        return dep if names == {"search", "later"} else None

    cluster.wait_until(both, "the reader's env to name both servers", 60)
    policy = get(cluster, "networkpolicy", "reader", ns)
    assert policy is not None
    by_port = [r["ports"] for r in policy["spec"]["egress"] if "ipBlock" in r["to"][0]]
    assert by_port == [[{"protocol": "TCP", "port": 443}]] * 2  # the model, and the url server


def test_the_api_server_refuses_bad_servers_and_a_command_server_is_local_only(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    both = mcpserver("both", url="https://a.example.com/mcp", command="npx")
    refused = cluster.apply(both, ns, check=False)
    assert refused.returncode != 0
    assert "set exactly one of url (a remote server), image" in refused.stderr
    no_port = cluster.apply(mcpserver("noport", image="ghcr.io/example/mcp:1"), ns, check=False)
    assert "image and port go together" in no_port.stderr
    cluster.apply(EXAMPLE, ns)  # examples/mcp-servers.yaml, verbatim
    local = wait_condition(cluster, "mcpserver", "sandbox", ns, status="False")
    assert condition(local, "Ready")["reason"] == "LocalOnly"  # type: ignore[index]
