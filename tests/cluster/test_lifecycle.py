"""The cluster's own lifecycle: the command line round trip, and restarting a component."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hack.testcluster.processes import Started

from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

COMMAND = Path(__file__).resolve().parents[2] / "hack" / "testcluster" / "testcluster"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMMAND), *args], capture_output=True, text=True, timeout=300
    )


def test_up_kubeconfig_down_round_trip_stops_its_own_processes_and_nothing_else(
    testcluster: Cluster, tmp_path: Path
) -> None:
    state_dir = str(tmp_path / "second")
    up = _run("up", "--state-dir", state_dir)
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip()
    assert _run("kubeconfig", "--state-dir", state_dir).stdout.strip() == kubeconfig
    nodes = testcluster.kubectl("get", "nodes", "-o", "name", kubeconfig=Path(kubeconfig))
    assert len(nodes.stdout.split()) == 4
    recorded = json.loads((tmp_path / "second" / "state.json").read_text())["processes"]
    started = [Started.from_json(p) for p in recorded]
    assert all(p.is_alive() for p in started)

    down = _run("down", "--state-dir", state_dir)

    assert down.returncode == 0, down.stderr
    assert not any(p.is_alive() for p in started)
    assert testcluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    after = _run("kubeconfig", "--state-dir", state_dir)
    assert after.returncode == 1
    assert "testcluster up" in after.stderr


def test_objects_survive_an_api_server_restart(
    testcluster: Cluster, cluster_namespace: str
) -> None:
    testcluster.kubectl("create", "configmap", "kept", "-n", cluster_namespace)

    testcluster.restart("kube-apiserver", down_seconds=1)

    kept = testcluster.kubectl_json("get", "configmap", "kept", "-n", cluster_namespace)
    assert kept["metadata"]["name"] == "kept"
