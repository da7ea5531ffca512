"""An agent's NetworkPolicy opens the ports of the MCP servers it names, and nothing for others."""

from __future__ import annotations

from agentkube.api.mcp import mcp_server_url, server_port
from tests.operator.conftest import agent
from tests.operator.test_networking import policy


def _ip_ports(spec: dict[str, object]) -> set[int]:
    rules = spec["egress"]
    assert isinstance(rules, list)
    return {
        p["port"] for r in rules if any("ipBlock" in peer for peer in r["to"]) for p in r["ports"]
    }


def test_an_agent_reaches_the_ports_of_its_mcp_servers_only() -> None:
    tools = ["mcp:https://docs.example.com/mcp", "mcp:http://tools.internal:8765/mcp"]
    assert _ip_ports(policy(agent(tools=tools, memory="none"))) == {443, 8765}
    assert _ip_ports(policy(agent(tools=["python-interpreter"], memory="none"))) == set()


def test_mcp_names_are_not_urls_and_ports_default_by_scheme() -> None:
    assert mcp_server_url("mcp:search-tools") is None
    assert mcp_server_url("mcp:ftp://x/mcp") is None
    assert mcp_server_url("python-interpreter") is None
    assert mcp_server_url("mcp:http://x:81/mcp") == "http://x:81/mcp"
    assert [server_port(u) for u in ("http://x/mcp", "https://x/mcp", "http://x:9/m")] == [
        80,
        443,
        9,
    ]
