"""Warm start: pre-started sandboxes serve exactly one execution each, and the pool refills."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from agentkube.sandbox import ExecutionRequest, Limits
from agentkube.sandbox.local import LocalSandbox
from tests.sandbox.helpers import assert_nothing_left, cgroup_members

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def pooled() -> AsyncIterator[LocalSandbox]:
    backend = LocalSandbox(pool_size=2)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()
    await assert_nothing_left(backend)


async def test_start_fills_the_pool_with_isolated_sandboxes(pooled: LocalSandbox) -> None:
    assert pooled.warm_count() == 2
    assert len(pooled.live_cgroups()) == 2  # each waiting sandbox already has its own cgroup


async def test_a_warm_sandbox_serves_one_execution_and_is_replaced(pooled: LocalSandbox) -> None:
    before = set(pooled.live_cgroups())
    result = await pooled.execute(ExecutionRequest(code="print('warm')"))
    assert result.stdout == "warm\n"
    await pooled.start()  # wait for the refill
    after = set(pooled.live_cgroups())
    assert len(after) == 2
    assert len(before - after) == 1, "the used sandbox must be destroyed, not returned"


async def test_nothing_carries_over_from_one_warm_execution_to_the_next(
    pooled: LocalSandbox,
) -> None:
    code = (
        "import os, sys\n"
        "print(os.path.exists('/tmp/mark'), 'json' in sys.modules)\n"
        "open('/tmp/mark', 'w').write('x')\n"
        "import json\n"
    )
    for _ in range(4):
        result = await pooled.execute(ExecutionRequest(code=code))
        assert result.stdout == "False False\n", result.stderr
        await pooled.start()


async def test_the_code_gets_its_own_limits_in_a_warm_sandbox(pooled: LocalSandbox) -> None:
    code = "b = bytearray(96 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint('ok')"
    tight = await pooled.execute(
        ExecutionRequest(code=code, limits=Limits(memory_bytes=64 * 1024 * 1024))
    )
    assert tight.killed_reason == "memory"
    loose = await pooled.execute(
        ExecutionRequest(code="while True: pass", limits=Limits(timeout_s=0.5))
    )
    assert loose.killed_reason == "timeout"


async def test_a_different_scratch_size_starts_a_cold_sandbox(pooled: LocalSandbox) -> None:
    request = ExecutionRequest(
        code="import shutil\nprint(shutil.disk_usage('/tmp').total)",
        limits=Limits(scratch_bytes=8 * 1024 * 1024),
    )
    result = await pooled.execute(request)
    assert result.stdout == f"{8 * 1024 * 1024}\n"
    assert pooled.warm_count() == 2, "the warm sandboxes were not spent on it"


async def test_a_warm_sandbox_that_died_is_not_handed_out(pooled: LocalSandbox) -> None:
    for name in pooled.live_cgroups():
        for pid in cgroup_members(name):
            os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    result = await pooled.execute(ExecutionRequest(code="print('fresh')"))
    assert result.stdout == "fresh\n"


async def test_concurrent_executions_on_a_small_pool_all_complete(pooled: LocalSandbox) -> None:
    results = await asyncio.gather(
        *(pooled.execute(ExecutionRequest(code=f"print({i})")) for i in range(8))
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
