"""Local sandbox latency and throughput, against bare Python measured in the same run.

    .venv/bin/python benchmarks/sandbox_bench.py [--runs 60] [--throughput 120]

Prints p50/p95 of ``print(1)``: bare ``python3 -c 'print(1)'`` (the same interpreter the sandbox
runs, so the ratio measures the sandbox, not a different Python), a cold sandbox (start, run,
destroy) and a warm one (taken from a ready pool); then executions per second with two workers,
cold and with a warm pool of two. Bare and sandboxed runs are interleaved so that both see the
same machine load. Goals: cold <= 2x bare, warm <= 0.5x bare, >= 20 executions/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

from measuring import percentile

from agentkube.sandbox import ExecutionRequest
from agentkube.sandbox.local import LocalSandbox

REQUEST = ExecutionRequest(code="print(1)")


def bare_ms(python: str) -> float:
    start = time.perf_counter()
    out = subprocess.run([python, "-c", "print(1)"], capture_output=True, check=True).stdout
    assert out == b"1\n"
    return (time.perf_counter() - start) * 1000


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def execute_checked(sandbox: LocalSandbox) -> None:
    result = await sandbox.execute(REQUEST)
    assert result.stdout == "1\n", result


async def latencies(runs: int, python: str) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"bare": [], "cold": [], "warm": []}
    cold = LocalSandbox()
    warm = LocalSandbox(pool_size=2)
    await warm.start()
    try:
        for _ in range(3):  # warm the page cache and the code paths
            await execute_checked(cold)
            bare_ms(python)
        for _ in range(runs):
            samples["bare"].append(bare_ms(python))
            samples["cold"].append(await timed(lambda: execute_checked(cold)))
            await cold.settle()
            await warm.start()  # a warm sandbox is ready, as in a steady service
            await asyncio.sleep(0.05)  # and its start-up CPU quota period has passed
            samples["warm"].append(await timed(lambda: execute_checked(warm)))
            await warm.settle()
    finally:
        await cold.aclose()
        await warm.aclose()
    return samples


async def throughput(total: int, workers: int, pool_size: int) -> float:
    sandbox = LocalSandbox(pool_size=pool_size)
    await sandbox.start()
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await execute_checked(sandbox)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
        await sandbox.settle()
        elapsed = time.perf_counter() - start
    finally:
        await sandbox.aclose()
    return total / elapsed


def describe_machine(sandbox: LocalSandbox) -> str:
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
        f"cgroup v{sandbox.cgroup_version}, seccomp {'on' if sandbox.seccomp_enabled else 'off'}, "
        f"load average {load}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--throughput", type=int, default=120, help="executions per mode")
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args()

    probe = LocalSandbox()
    print(f"machine: {describe_machine(probe)}")
    await probe.aclose()
    samples = await latencies(args.runs, args.python)
    bare = statistics.median(samples["bare"])
    print(f"\nprint(1), {args.runs} runs each   p50 ms    p95 ms   p50 / bare p50")
    for name in ("bare", "cold", "warm"):
        p50, p95 = percentile(samples[name], 0.5), percentile(samples[name], 0.95)
        print(f"  {name:<27} {p50:8.1f}  {p95:8.1f}   {p50 / bare:6.2f}x")
    print(f"\nthroughput, 2 workers, {args.throughput} executions each mode")
    for label, pool in (("cold (no pool)", 0), ("warm pool of 2", 2)):
        rate = await throughput(args.throughput, workers=2, pool_size=pool)
        print(f"  {label:<27} {rate:8.1f} executions/s")
    print(f"\nload average after: {', '.join(f'{n:.2f}' for n in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
