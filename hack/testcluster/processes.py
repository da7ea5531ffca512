"""Starting component processes detached, and stopping exactly those processes later.

Each component runs in its own session (so a Ctrl-C in the shell that ran `up` does not reach
it) with its output in `logs/<name>.log`. A started process is recorded by pid *and* by its
kernel start time and executable path: `stop` signals a pid only while all three still match,
so a recycled pid that now belongs to something else is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import StartupFailed

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True)
# Children started by this process, kept so they are reaped (and not reported as leaked).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Tied
# children are therefore forked from this one thread, which lives as long as the process: a
# restart called from a short-lived worker thread (asyncio.to_thread, say) must not leave a
# component that is SIGKILLed when that thread ends.
_FORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="testcluster-forker")


@dataclass(frozen=True, kw_only=True)
class Started:
    """What identifies one process this code started."""

    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: unique together with the pid
    executable: str
    log: str
    argv: tuple[str, ...] = ()  # the command line, so the component can be restarted as it was

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "argv": list(self.argv)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Started:
        return cls(**{**data, "argv": tuple(data.get("argv", ()))})

    def is_alive(self) -> bool:
        """True while the pid still is the very process that was started."""
        return (
            _start_ticks(self.pid) == self.start_ticks and _executable(self.pid) == self.executable
        )


def spawn(
    name: str, argv: list[str], log: Path, *, tie_to_parent: bool = False, append: bool = False
) -> Started:
    """Start argv detached, output written to log (appended if append); return its record.

    tie_to_parent: the kernel SIGKILLs it when this process dies, so a killed or crashed pytest
    session leaves no control plane behind (SIGKILL: kube-apiserver can hang in its graceful
    shutdown once etcd is gone). `up` leaves it off so that the cluster outlives the command.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as out:  # `down` keeps logs for a post-mortem

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if tie_to_parent else None,
            )

        proc = _FORKER.submit(popen).result() if tie_to_parent else popen()
    _CHILDREN[proc.pid] = proc
    ticks = _start_ticks(proc.pid)
    exe = _executable(proc.pid)
    if ticks is None or exe is None:  # it died at once; the caller reads the log
        _reap(proc.pid)
        ticks, exe = -1, argv[0]
    return Started(
        name=name, pid=proc.pid, start_ticks=ticks, executable=exe, log=str(log), argv=tuple(argv)
    )


def stop(proc: Started, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after timeout; a no-op if the process is gone or not ours."""
    if not proc.is_alive():
        _reap(proc.pid)  # exited on its own: collect it if it was our child
        return
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    _reap(proc.pid, timeout=5.0)


def log_tail(proc: Started, lines: int = 25) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: no imports or allocation-heavy work here.
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _reap(pid: int, timeout: float = 0.0) -> None:
    """Collect our own exited child, so that no zombie (or live Popen object) outlives it."""
    child = _CHILDREN.get(pid)
    if child is None:
        return  # not our child (an earlier `up` started it): init reaps it
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=timeout)
    if child.returncode is not None:
        del _CHILDREN[pid]


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    if fields[0] == "Z":
        return None  # a zombie has already exited
    return int(fields[19])


def _executable(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def wait_ready(
    what: str, deadline: float, proc: Started, ready: Callable[[], bool], every: float = 0.25
) -> None:
    """Until ``ready()``; StartupFailed with the end of ``proc``'s log if it dies or time is up."""
    while time.monotonic() < deadline:
        if ready():
            return
        if not proc.is_alive():
            raise StartupFailed(
                f"{proc.name} exited while waiting for {what}; its log ({proc.log}) ends:\n"
                f"{log_tail(proc)}"
            )
        time.sleep(every)
    raise StartupFailed(
        f"timed out waiting for {what}; {proc.name}'s log ({proc.log}) ends:\n{log_tail(proc)}"
    )
