"""The test cluster's process bookkeeping and prerequisites, without a cluster."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import pytest
from hack.testcluster import binaries, processes
from hack.testcluster.errors import MissingPrerequisite


def test_stop_terminates_a_process_it_started(tmp_path: Path) -> None:
    proc = processes.spawn("sleeper", ["/bin/sleep", "30"], tmp_path / "sleeper.log")
    assert proc.is_alive()
    processes.stop(proc, timeout=5)
    assert not proc.is_alive()
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped, not left a zombie


def test_stop_leaves_alone_a_pid_that_is_no_longer_the_process_it_started(
    tmp_path: Path,
) -> None:
    other = subprocess.Popen(["/bin/sleep", "30"])
    time.sleep(0.1)  # start times tick every 10 ms: a reused pid starts later than the original
    try:
        started = processes.spawn("sleeper", ["/bin/sleep", "30"], tmp_path / "s.log")
        processes.stop(started, timeout=5)
        recycled = dataclasses.replace(started, pid=other.pid)  # same pid reused by another
        assert not recycled.is_alive()
        processes.stop(recycled, timeout=1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_missing_binaries_fail_naming_the_command_that_builds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKUBE_CACHE", str(tmp_path))
    with pytest.raises(MissingPrerequisite, match="make testcluster") as caught:
        binaries.locate()
    assert str(tmp_path) in str(caught.value)
