"""Waiting, as the end-to-end run does it: each step says what it waits for and how long it
will, and a step that times out fails with the objects' events, the Agents' conditions and the
operator's log, so the reason is in the output.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from tests.plugins.testcluster import Cluster

T = TypeVar("T")


def say(message: str) -> None:
    """One progress line on the terminal (pytest's capture does not hide it)."""
    print(f"e2e: {message}", file=sys.__stderr__, flush=True)


def events(cluster: Cluster, namespace: str) -> str:
    result = cluster.kubectl(
        "get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False
    )
    return f"events in {namespace}:\n{result.stdout}{result.stderr}"


def conditions(cluster: Cluster, namespace: str) -> str:
    """The conditions of the namespace's Agents, one line each (what the operator last wrote)."""
    result = cluster.kubectl("get", "agents", "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return ""
    lines = []
    for agent in json.loads(result.stdout).get("items", []):
        for c in agent.get("status", {}).get("conditions", []):
            lines.append(
                f"  {agent['metadata']['name']} {c.get('type')}={c.get('status')} "
                f"{c.get('reason')}: {c.get('message')} (since {c.get('lastTransitionTime')})"
            )
    return f"agent conditions in {namespace}:\n" + "\n".join(lines) + "\n" if lines else ""


def operator_log(cluster: Cluster, namespace: str, lines: int = 80) -> str:
    """The tail of the operator's log (its current and, if it restarted, previous container)."""
    out = []
    for previous in (True, False):
        result = cluster.kubectl(
            "logs", "-n", namespace, "deployment/agentkube-operator", f"--tail={lines}",
            *(["--previous"] if previous else []), check=False,
        )  # fmt: skip
        if result.returncode == 0 and result.stdout.strip():
            which = "previous container" if previous else "current container"
            out.append(f"operator log ({which}), last {lines} lines:\n{result.stdout}")
    return "".join(out)


def context(cluster: Cluster, namespaces: tuple[str, ...]) -> str:
    """What a timed-out step shows: each namespace's events and Agent conditions, and the
    operator's log when its namespace is among them."""
    parts = []
    for ns in namespaces:
        parts += [events(cluster, ns), conditions(cluster, ns)]
        if ns == "agentkube-system":
            parts.append(operator_log(cluster, ns))
    return "\n".join(p for p in parts if p)


def wait_for(
    cluster: Cluster,
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    namespaces: tuple[str, ...] = (),
    every: float = 0.5,
) -> T:
    """Poll probe until it returns something truthy; on timeout fail with the namespaces' events."""
    say(f"waiting up to {timeout:.0f}s for {what}")
    start = time.monotonic()
    while True:
        value = probe()
        if value:
            say(f"{what}: after {time.monotonic() - start:.1f}s")
            return value
        if time.monotonic() - start > timeout:
            shown = context(cluster, namespaces)
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}\n{shown}", pytrace=False
            )
        time.sleep(every)


def deployment_available(cluster: Cluster, namespace: str, name: str) -> Callable[[], bool]:
    def probe() -> bool:
        result = cluster.kubectl(
            "get", "deployment", name, "-n", namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return False
        status = json.loads(result.stdout).get("status", {})
        return bool(status.get("availableReplicas")) and not status.get("unavailableReplicas")

    return probe
