"""A sandbox pod runs no code until it can no longer reach the Kubernetes API (the runner's
``await_isolation``): the real pod runner, as a cold Job's container starts it, probing a real
server on loopback that plays the ``kubernetes`` Service's address. On the real node, with
kube-router enforcing (or not) the namespace's policy: tests/realnode/test_warm_exec.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkube.sandbox.contract import ExecutionRequest
from agentkube.sandbox.kubernetes import pod_runner
from agentkube.sandbox.kubernetes.rendering import PodSettings, render_job, runner_source

CODE = "print('ran')"


class Api:
    """A listening socket that accepts (and counts) connections until it is closed."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.server.close()  # from now on a connection is refused, as under deny-all
        self._thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def _run(tmp_path: Path, env: dict[str, str], *, timeout: float = 30) -> dict[str, object]:
    """The runner as a cold Job's container runs it; its termination message, parsed."""
    log = tmp_path / "termination-log"
    request = json.dumps({"language": "python", "code": CODE, "timeout_s": 10})
    subprocess.run(
        [sys.executable, "-c", runner_source()],
        cwd=tmp_path,
        env={
            pod_runner.REQUEST_ENV: request,
            "AGENTKUBE_TERMINATION_LOG": str(log),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            **env,
        },
        check=True,
        timeout=timeout,
    )
    return dict(json.loads(log.read_text()))


def _service(port: int, wait_s: float) -> dict[str, str]:
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
        pod_runner.ISOLATION_WAIT_ENV: str(wait_s),
    }


def test_a_pod_that_still_reaches_the_api_refuses_to_run_and_says_why(
    tmp_path: Path, api: Api
) -> None:
    result = _run(tmp_path, _service(api.port, 0.5))
    assert result["exit"] is None and result["out"] == ""
    assert f"could still reach the Kubernetes API at 127.0.0.1:{api.port} after 0.5 s" in str(
        result["err"]
    )
    assert api.accepted >= 2  # it kept trying until its wait ran out


def test_code_runs_once_the_pods_egress_is_cut(tmp_path: Path, api: Api) -> None:
    # The policy comes into force while the pod waits: the code runs then, not before.
    closer = threading.Timer(0.6, api.close)
    closer.start()
    began = time.monotonic()
    result = _run(tmp_path, _service(api.port, 20))
    closer.join()
    assert result["exit"] == 0 and result["out"] == "ran\n"
    assert api.accepted >= 2 and time.monotonic() - began >= 0.6


def test_a_pod_cut_off_from_the_start_runs_at_once(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing answers there
    began = time.monotonic()
    result = _run(tmp_path, _service(port, 20))
    assert result["exit"] == 0 and result["out"] == "ran\n"
    assert time.monotonic() - began < 10  # no wait for a refused probe (a bound, not a timing)


def test_without_the_api_s_address_the_pod_refuses_rather_than_runs_unchecked(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, {pod_runner.ISOLATION_WAIT_ENV: "5"})
    assert result["exit"] is None and "no KUBERNETES_SERVICE_HOST" in str(result["err"])


def test_every_sandbox_pod_waits_for_isolation_unless_the_gateway_turns_it_off() -> None:
    request = ExecutionRequest(code=CODE)
    env = render_job("sbx-1", request, PodSettings())["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {"name": pod_runner.ISOLATION_WAIT_ENV, "value": "30"} in env
    off = render_job("sbx-1", request, PodSettings(isolation_wait_s=None))
    names = [e["name"] for e in off["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert pod_runner.ISOLATION_WAIT_ENV not in names
