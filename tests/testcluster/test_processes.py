"""The test cluster's process bookkeeping and prerequisites, without a cluster."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
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


def test_a_process_tied_to_its_parent_dies_when_the_parent_is_killed(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from hack.testcluster import processes\n"
        "log = Path(sys.argv[1])\n"
        "p = processes.spawn('sleeper', ['/bin/sleep', '60'], log, tie_to_parent=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "s.log")],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: no cleanup code of the parent runs
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child_pid}").exists()


def test_a_tied_process_started_from_a_short_lived_thread_outlives_that_thread(
    tmp_path: Path,
) -> None:
    # The kernel's parent-death signal follows the forking *thread*: a restart run through
    # asyncio.to_thread once killed the API server when the worker thread ended.
    started: list[processes.Started] = []
    thread = threading.Thread(
        target=lambda: started.append(
            processes.spawn("sleeper", ["/bin/sleep", "30"], tmp_path / "s.log", tie_to_parent=True)
        )
    )
    thread.start()
    thread.join()
    try:
        time.sleep(0.3)  # the signal, were it sent, arrives at once
        assert started[0].is_alive()
    finally:
        processes.stop(started[0], timeout=5)
