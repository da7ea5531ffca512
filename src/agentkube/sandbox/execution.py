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
import json
import time
from typing import Any

from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, KilledReason
from agentkube.sandbox.errors import SandboxUnavailable
from agentkube.sandbox.spawning import SandboxProcess
from agentkube.sandbox.streams import write_all

PIDS_POLL_S = 0.02
DRAIN_TIMEOUT_S = 5.0


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
    return json.dumps(
        {
            "language": request.language,
            "code": request.code,
            "files": request.files,
            "env": request.env,
            "bash": sandbox.bash,
            "files_limit": request.limits.output_bytes,
        }
    ).encode()


async def run_request(sandbox: SandboxProcess, request: ExecutionRequest) -> ExecutionResult:
    """Run ``request`` in a started sandbox; the caller destroys the sandbox afterwards."""
    limits = request.limits
    watch = _Watch()
    for stream in (sandbox.stdout, sandbox.stderr):
        stream.cap = limits.output_bytes
        stream.on_overflow = lambda: watch.kill_for("output_limit")
    sandbox.result.cap = 8 * limits.output_bytes + 64 * 1024
    started = time.perf_counter()
    writer = asyncio.create_task(write_all(sandbox.stdin_fd, _payload(sandbox, request)))
    pids = asyncio.create_task(_watch_pids(sandbox, watch))
    stopped = asyncio.create_task(watch.stop.wait())
    try:
        ends: set[asyncio.Future[Any]] = {sandbox.exited, stopped}
        done, _ = await asyncio.wait(
            ends, timeout=limits.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            watch.kill_for("timeout")
        duration_ms = (time.perf_counter() - started) * 1000
    finally:
        for task in (pids, stopped):
            task.cancel()
    await sandbox.cgroup.kill()
    await sandbox.exited
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    await _drain(sandbox)
    return _result(sandbox, watch, duration_ms)


async def _drain(sandbox: SandboxProcess) -> None:
    """Read what the dead sandbox left in its pipes (every writer is gone, so EOF is near)."""
    readers = (sandbox.stdout, sandbox.stderr, sandbox.result)
    await asyncio.wait([r.closed for r in readers], timeout=DRAIN_TIMEOUT_S)
    for reader in readers:
        reader.close()


def _parse_report(data: bytes) -> tuple[int | None, dict[str, str], bool]:
    """The pid-1 helper's report: ``R<exit> <truncated>\\n<files json>`` (untrusted)."""
    status, newline, files_json = data[1:].partition(b"\n")
    try:
        exit_text, truncated_text = status.decode().split()
        exit_code, truncated = int(exit_text), truncated_text == "1"
    except ValueError:
        return None, {}, False
    if not newline:
        return exit_code, {}, truncated
    try:
        raw: Any = json.loads(files_json)
    except ValueError:
        return exit_code, {}, True
    if not isinstance(raw, dict):
        return exit_code, {}, True
    files = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
    return exit_code, files, truncated


def _result(sandbox: SandboxProcess, watch: _Watch, duration_ms: float) -> ExecutionResult:
    events = sandbox.cgroup.events()
    reason = watch.reason
    if reason is None and events.oom_kills:
        reason = "memory"
    if reason is None and events.pids_limit_hits:
        reason = "pids"
    report = bytes(sandbox.result.data)
    if not report.startswith(b"R") and reason is None:
        message = sandbox.stderr.text().strip().splitlines() or ["no message"]
        raise SandboxUnavailable(f"the sandbox could not start: {message[-1]}")
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
