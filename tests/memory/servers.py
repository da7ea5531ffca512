"""Real Redis and Chroma servers on free loopback ports, in temporary directories.

A missing server binary FAILS the test with the command that installs it; nothing skips.
``kill()`` is SIGKILL (a crash, not a shutdown) and ``start()`` again reuses the same port and
data directory, so a test can take a store away mid-run and bring it back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"server did not listen on 127.0.0.1:{port} within {timeout}s: {log}")


class ServerProcess:
    name = "server"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        pass

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        _wait_for_port(self.port, self.process, self.log, timeout)
        self.ready()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None


class RedisServer(ServerProcess):
    """``redis-server`` with AOF on (``appendfsync always``, so a SIGKILL loses nothing)."""

    name = "redis"

    def __init__(self, directory: Path, *extra: str) -> None:
        self.extra = list(extra)
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed; the memory tests need it: run `make setup-dev` "
                "(scripts/setup.sh installs it) or `apt-get install redis-server`",
                pytrace=False,
            )
        self.binary = binary
        super().__init__(directory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip


class ChromaServer(ServerProcess):
    """``chroma run`` from this virtualenv's chromadb."""

    name = "chroma"

    def __init__(self, directory: Path) -> None:
        binary = Path(sys.executable).parent / "chroma"
        if not binary.exists():
            pytest.fail(
                f"{binary} is missing; chromadb is a dependency: run `make setup-dev`",
                pytrace=False,
            )
        self.binary = binary
        (directory / "data").mkdir(parents=True, exist_ok=True)
        super().__init__(directory)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        data = str(self.directory / "data")
        return [
            str(self.binary),
            "run",
            "--path",
            data,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"chroma at {self.url} never answered its heartbeat: {self.log}")
