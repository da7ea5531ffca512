"""Two `agentkube agent serve` processes: the planner's agent: tool goes over A2A (--peer)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.teams.replicas import Replica

TEAM = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: planner}
spec: {model: m, role: planner, tools: ['agent:coder'], memory: none}
---
apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: coder}
spec: {model: m, role: executor, memory: none, systemPrompt: You write code.}
"""


def test_a_served_planner_delegates_to_a_served_executor_over_a2a(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    coder = Replica(tmp_path, "--agent", "coder", manifest=team).launch()
    planner = Replica(
        tmp_path, "--agent", "planner", "--peer", f"coder={coder.url}", manifest=team
    ).launch()
    try:
        coder.wait_ready()
        planner.wait_ready()
        with httpx.Client(timeout=30) as client:
            card = client.get(f"{coder.url}/.well-known/agent-card.json").json()
            assert card["name"] == "coder"
            task = client.post(f"{planner.url}/v1/tasks", json={"task": "@coder: say hi"}).json()
            deadline = time.monotonic() + 120
            while (view := client.get(f"{planner.url}/v1/tasks/{task['id']}").json())[
                "status"
            ] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, view
                time.sleep(0.2)
        assert view["status"] == "succeeded", view
        (call,) = view["result"]["tool_calls"]
        assert call["name"] == "agent:coder" and call["ok"], call
        assert call["delegated"]["agent"] == "coder"
        assert "offline demo model" in call["delegated"]["output"]
    finally:
        planner.stop()
        coder.stop()
