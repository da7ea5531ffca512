"""agentkube server processes for the telemetry tests, each exporting to the test's receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.memory.servers import free_port


def otel_env(receiver_url: str, **extra: str) -> dict[str, str]:
    """What the operator puts in a pod's env, pointed at the receiver (and flushed quickly)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **extra,
    }


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_", "OTEL_"))
    }
    return {**env, **extra}


@contextmanager
def service(
    args: list[str], env: dict[str, str], log: Path, health: str = "/healthz"
) -> Iterator[str]:
    """``agentkube ARGS --port P`` until the block ends; yields its URL once ``health`` is 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkube", *args, "--port", str(port)],
            env=clean_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{args[:2]} exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(url + health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{args[:2]} not ready: {log}"
            time.sleep(0.1)  # polling a server that is starting
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
