"""Restart the test cluster's kube-apiserver in place (same binary, same flags, same port).

The `testcluster` fixture has no restart operation, so this helper stops the process recorded in
the cluster's state.json and starts its command line again, tied to the pytest process like the
original. The restarted process is not in state.json: it is stopped when pytest exits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hack.testcluster import processes

from tests.plugins.testcluster import Cluster


def restart_apiserver(cluster: Cluster, down_seconds: float = 3.0) -> None:
    state = json.loads((cluster.state_dir / "state.json").read_text())
    (record,) = [p for p in state["processes"] if p["name"] == "kube-apiserver"]
    pid = _live_pid(record["pid"])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    processes.stop(processes.Started.from_json(record))
    time.sleep(down_seconds)
    started = processes.spawn(
        "kube-apiserver", [a.decode() for a in argv], Path(record["log"]), tie_to_parent=True
    )
    record.update(pid=started.pid)
    cluster.wait_until(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        "the restarted kube-apiserver to be ready",
        timeout=90,
    )


def _live_pid(pid: int) -> int:
    if not Path(f"/proc/{pid}").exists():
        pytest.fail(
            "kube-apiserver is not the process state.json records (restarted already?)",
            pytrace=False,
        )
    return pid
