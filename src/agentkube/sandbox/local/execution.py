"""Watching one execution: send the request, enforce the limits the kernel does not, report.

The kernel enforces CPU, memory, pids and scratch size through the cgroup and the tmpfs. This
module adds what it cannot: the wall-clock timeout, the per-stream output cap (hitting it kills the
sandbox, so a flood costs the runner at most the cap) and an early kill when the pids limit is
hit (a fork bomb would otherwise burn its CPU share until the timeout). ``killed_reason`` names the
first limit that ended the run; ``exit_code`` is ``None`` when the code never got to exit (and
``128 + signal`` when it died of a signal, as in a shell or a Kubernetes container).
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import time
from typing import Any

from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, KilledReason
from agentkube.sandbox.errors import SandboxFailure, SandboxRequestError, SandboxUnavailable
from agentkube.sandbox.local.spawning import SandboxProcess

PIDS_POLL_S = 0.02
STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 5.0
MARSHAL_VERSION = 4  # stable since Python 3.4, so host and sandbox Pythons may differ


class _Watch:
    """The first reason to stop, and an event that fires when there is one."""

    def __init__(self) -> None:
        self.reason: KilledReason | None = None
        self.stop = asyncio.Event()

    def kill_for(self, reason: KilledReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()


async def _watch_pids(sandbox: SandboxProcess, watch: _Watch) -> None:
    while True:
        if sandbox.cgroup.events().pids_limit_hits:
            watch.kill_for("pids")
            return
        await asyncio.sleep(PIDS_POLL_S)


def _payload(sandbox: SandboxProcess, request: ExecutionRequest) -> bytes:
    # marshal, not json: the helper then loads it without importing anything (see _shim.py).
    message = {
        "language": request.language,
        "code": request.code,
        "files": request.files,
        "env": request.env,
        "bash": sandbox.bash,
        "files_limit": request.limits.output_bytes,
    }
    return marshal.dumps(message, MARSHAL_VERSION)


def _report_length(data: bytes | bytearray) -> int | None:
    """Total length of a report ``R<exit> <truncated> <n>\n<n bytes>``, once its header is in."""
    header, newline, _ = bytes(data[:64]).partition(b"\n")
    if not newline:
        return None
    try:
        body = int(header.split()[2])
    except (IndexError, ValueError):
        return None
    return len(header) + 1 + body


async def run_request(sandbox: SandboxProcess, request: ExecutionRequest) -> ExecutionResult:
    """Run ``request`` in a started sandbox; the caller destroys the sandbox afterwards."""
    limits = request.limits
    watch = _Watch()
    for stream in (sandbox.stdout, sandbox.stderr):
        stream.cap = limits.output_bytes
        stream.on_overflow = lambda: watch.kill_for("output_limit")
    sandbox.result.cap = 2 * limits.output_bytes + 64 * 1024
    await _wait_until_ready(sandbox)
    sandbox.cgroup.set_limits(limits)
    reported = _when_reported(sandbox)
    started = time.perf_counter()
    writer = asyncio.create_task(sandbox.send(_payload(sandbox, request)))
    pids = asyncio.create_task(_watch_pids(sandbox, watch))
    stopped = asyncio.create_task(watch.stop.wait())
    try:
        # The report arrives as the code ends; bubblewrap's own exit would add a few wake-ups.
        ends: set[asyncio.Future[Any]] = {sandbox.exited, stopped, reported}
        done, _ = await asyncio.wait(
            ends, timeout=limits.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            watch.kill_for("timeout")
        duration_ms = (time.perf_counter() - started) * 1000
    finally:
        for task in (pids, stopped):
            task.cancel()
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    if reported.done() and watch.reason is None:
        # The code has exited and everything it wrote is in the pipes. SIGKILL the rest (pid 1
        # among them, whose death takes down the pid namespace); the caller reaps and removes.
        sandbox.cgroup.send_kill()
        for stream in (sandbox.stdout, sandbox.stderr):
            stream.read_available()
    else:
        await sandbox.cgroup.kill()
        await sandbox.exited
        await _drain(sandbox)
    return _result(sandbox, watch, duration_ms)


async def _wait_until_ready(sandbox: SandboxProcess) -> None:
    """Wait for the helper's first byte; if the sandbox died instead, say why."""
    try:
        ready = await asyncio.wait_for(sandbox.ready(), STARTUP_TIMEOUT_S)
    except TimeoutError as e:
        raise SandboxFailure(f"the sandbox did not start within {STARTUP_TIMEOUT_S:.0f} s") from e
    if ready:
        return
    await sandbox.exited
    await _drain(sandbox)
    if sandbox.cgroup.events().oom_kills:
        raise SandboxRequestError("the sandbox ran out of memory while starting: raise the limit")
    lines = sandbox.stderr.text().strip().splitlines() or ["no message"]
    raise SandboxUnavailable(f"the sandbox could not start: {lines[-1]}")


def _when_reported(sandbox: SandboxProcess) -> asyncio.Future[None]:
    """A future that resolves once the helper's whole report has arrived."""
    reported: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check() -> None:
        data = sandbox.result.data
        length = _report_length(data[1:])
        if length is not None and len(data) - 1 >= length and not reported.done():
            reported.set_result(None)

    sandbox.result.on_data = check
    return reported


async def _drain(sandbox: SandboxProcess) -> None:
    """Read what the dead sandbox left in its pipes (every writer is gone, so EOF is near)."""
    readers = (sandbox.stdout, sandbox.stderr, sandbox.result)
    await asyncio.wait([r.closed for r in readers], timeout=DRAIN_TIMEOUT_S)
    for reader in readers:
        reader.close()


def _parse_report(data: bytes) -> tuple[int | None, dict[str, str], bool]:
    """The pid-1 helper's report (untrusted): exit status, output files, whether cut short."""
    header, _, body = data[1:].partition(b"\n")
    try:
        exit_text, truncated_text, _length = header.decode().split()
        exit_code, truncated = int(exit_text), truncated_text == "1"
    except ValueError:
        return None, {}, False
    files: dict[str, str] = {}
    while body:
        entry, newline, rest = body.partition(b"\n")
        try:
            name_len, data_len = (int(n) for n in entry.split())
        except ValueError:
            return exit_code, files, True
        if not newline or name_len < 0 or data_len < 0 or len(rest) < name_len + data_len:
            return exit_code, files, True
        name = rest[:name_len].decode("utf-8", "replace")
        files[name] = rest[name_len : name_len + data_len].decode("utf-8", "replace")
        body = rest[name_len + data_len :]
    return exit_code, files, truncated


def _result(sandbox: SandboxProcess, watch: _Watch, duration_ms: float) -> ExecutionResult:
    events = sandbox.cgroup.events()
    reason = watch.reason
    if reason is None and events.oom_kills:
        reason = "memory"
    if reason is None and events.pids_limit_hits:
        reason = "pids"
    report = bytes(sandbox.result.data)
    exit_code, files, files_truncated = _parse_report(report)
    return ExecutionResult(
        exit_code=exit_code,
        stdout=sandbox.stdout.text(),
        stderr=sandbox.stderr.text(),
        duration_ms=round(duration_ms, 3),
        killed_reason=reason,
        truncated=sandbox.stdout.overflowed
        or sandbox.stderr.overflowed
        or sandbox.result.overflowed
        or files_truncated,
        files=files,
    )
