"""Run the real `agentkube` command line as a subprocess, the way a user does."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.memory.servers import free_port


def agentkube(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agentkube ARGS`` with this interpreter; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "agentkube", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env=env,
        check=False,
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the server ``process`` started answers ``/readyz`` at ``url``; fail if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {process.communicate()[1].decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"the server at {url} was not ready within {timeout}s")


@contextmanager
def agent_service(*args: str, env: dict[str, str]) -> Iterator[str]:
    """``agentkube agent serve ARGS`` on a free loopback port; yields its URL once ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkube", "agent", "serve", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=180)  # pydantic-ai and whatever the agent opens: slow
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def finished_task(url: str, task: str, timeout: float = 60) -> dict[str, Any]:
    """Submit ``task`` to the agent service at ``url``; its view once it is no longer running."""
    submitted = httpx.post(f"{url}/v1/tasks", json={"task": task}).json()
    deadline = time.monotonic() + timeout
    while (view := httpx.get(f"{url}/v1/tasks/{submitted['id']}").json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    return dict(view)
