"""`agentkube agent serve` processes as replicas of one agent, sharing one Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.memory.servers import free_port

AGENT = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: worker}
spec: {model: echo-model, role: executor, memory: none}
"""


class Replica:
    """One ``agent serve`` process on a free loopback port."""

    def __init__(
        self,
        directory: Path,
        *flags: str,
        env: dict[str, str] | None = None,
        manifest: Path | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.flags = list(flags)
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"replica-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False

    def start(self, timeout: float = 180.0) -> Replica:
        """Launch and wait until ready (this machine may be busy: startup is bounded, not fast)."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> Replica:
        manifest = self.manifest or self.directory / "worker.yaml"
        if self.manifest is None:
            manifest.write_text(AGENT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_"))}
        env["AGENTKUBE_DATA_DIR"] = str(self.directory / "data")
        env.update(self.extra_env)
        command = [
            sys.executable, "-m", "agentkube", "agent", "serve", str(manifest),
            "--port", str(self.port), *self.flags,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 180.0) -> Replica:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"replica exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    self.ready = True
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica on {self.url} not ready in {timeout}s: {self.log}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is cleaned up."""
        if self.process is not None and self.alive:
            self.process.kill()
            self.process.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM, then wait for the drain; fails unless the shutdown was clean (uvicorn
        re-raises SIGTERM after its shutdown, so the exit status is that signal)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        log = self.log.read_text()
        assert code in (0, -signal.SIGTERM), log[-3000:]
        assert "Application shutdown complete" in log, log[-3000:]

    def stop(self) -> None:
        if self.process is not None and self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
