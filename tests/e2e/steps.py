"""Waiting, as the end-to-end run does it: each step says what it waits for and how long it
will, and a step that times out fails with the objects' events, so the reason is in the output.
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
            context = "\n".join(events(cluster, ns) for ns in namespaces)
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}\n{context}", pytrace=False
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
