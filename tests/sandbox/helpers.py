"""Helpers for the sandbox tests: run code, and check the host was left unharmed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agentkube.sandbox import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.local import LocalSandbox


async def assert_nothing_left(backend: LocalSandbox) -> None:
    """Every execution cgroup is gone (so no sandboxed process survives); the host still forks."""
    await backend.settle()
    assert backend.live_cgroups() == [], "a sandbox outlived its execution"
    assert subprocess.run(["true"], check=False).returncode == 0


async def run(
    backend: LocalSandbox, code: str, *, language: str = "python", **limits: float
) -> ExecutionResult:
    request = ExecutionRequest(
        language=language,  # type: ignore[arg-type,unused-ignore]
        code=code,
        limits=Limits(**limits),  # type: ignore[arg-type,unused-ignore]
    )
    result = await backend.execute(request)
    await backend.settle()
    assert backend.live_cgroups() == [], "a sandbox outlived its execution"
    return result


def cgroup_members(cgroup_name: str) -> list[int]:
    """Host pids in an execution cgroup (read from the cgroup filesystem, v1 or v2)."""
    for procs in Path("/sys/fs/cgroup").glob(f"**/{cgroup_name}/cgroup.procs"):
        return [int(p) for p in procs.read_text().split()]
    return []
