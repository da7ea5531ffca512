"""Agent runtime figures: what a task costs on top of the code it runs.

Measured side by side in one run, so the ratios hold on a busy machine:

- CLI start: ``agentkube version`` and a whole ``agentkube run`` of the seed manifest (offline
  model, one sandboxed ``print(1)``), against bare ``python3 -c 'print(1)'``;
- in process: one offline task through pydantic-ai + the local sandbox (cold and with a warm
  pool), against one bare sandbox execution;
- HTTP API: tasks per second through a real ``agentkube agent serve`` process (offline model, no
  tools), submit -> event stream to the end, from 1 and from 16 concurrent clients.

Usage: .venv/bin/python benchmarks/runtime_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from measuring import percentile  # noqa: E402

from agentkube.api.loading import load_file, single_agent  # noqa: E402
from agentkube.runtime.building import RuntimeSettings, open_runtime  # noqa: E402
from agentkube.sandbox.contract import ExecutionRequest  # noqa: E402
from agentkube.sandbox.local import LocalSandbox  # noqa: E402

TASK = "```python\nprint(1)\n```"


def line(name: str, samples: list[float], base: float | None = None) -> str:
    p50, p95 = statistics.median(samples), percentile(samples, 0.95)
    ratio = f"  {p50 / base:5.2f}x baseline" if base else ""
    return f"{name:<44} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms{ratio}"


def timed_command(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def in_process(runs: int, data_dir: Path) -> None:
    agent = single_agent(load_file(ROOT / "examples/seed-agent.yaml"), "seed")
    sandbox = LocalSandbox()
    try:
        bare = await timed(lambda: sandbox.execute(ExecutionRequest(code="print(1)")), runs)
    finally:
        await sandbox.aclose()
    print(line("sandbox execution alone (cold)", bare))
    for pool in (0, 2):
        settings = RuntimeSettings(environ={}, data_dir=data_dir, sandbox_pool=pool)
        async with open_runtime(agent, [], settings) as runtime:
            await runtime.run(TASK)  # warm-up: imports, first pool fill
            samples = await timed(lambda rt=runtime: rt.run(TASK), runs)
        label = f"offline task, sandbox pool {pool}"
        print(line(label, samples, statistics.median(bare)))


async def http_throughput(tasks: int, workdir: Path, env: dict[str, str]) -> None:
    manifest = workdir / "bench-agent.yaml"
    manifest.write_text(
        "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: bench}\n"
        "spec: {model: offline, memory: none}\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/agentkube"),
            "agent",
            "serve",
            str(manifest),
            "--port",
            str(port),
            "--concurrency",
            "8",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)

            async def one(i: int) -> None:
                task_id = (await client.post("/v1/tasks", json={"task": f"t{i}"})).json()["id"]
                # The event stream ends when the task does: no polling.
                async with client.stream("GET", f"/v1/tasks/{task_id}/events") as events:
                    async for _ in events.aiter_lines():
                        pass

            for concurrency in (1, 16):
                start = time.perf_counter()
                for batch in range(0, tasks, concurrency):
                    await asyncio.gather(*(one(i) for i in range(batch, batch + concurrency)))
                rate = tasks / (time.perf_counter() - start)
                label = f"HTTP API, offline, {concurrency} client(s)"
                print(f"{label:<44} {rate:8.1f} tasks/s ({tasks} tasks, submit -> last event)")
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_"))}
        env["AGENTKUBE_DATA_DIR"] = tmp
        cli = [str(ROOT / ".venv/bin/agentkube")]
        cli_runs = max(3, args.runs // 4)
        bare = timed_command(["/usr/bin/python3", "-c", "print(1)"], cli_runs, env)
        base = statistics.median(bare)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        print(line("bare /usr/bin/python3 -c 'print(1)' (baseline)", bare))
        print(line("agentkube version", timed_command([*cli, "version"], cli_runs, env), base))
        seed = [*cli, "run", str(ROOT / "examples/seed-agent.yaml"), "--json", "--task", TASK]
        print(
            line("agentkube run seed manifest (offline)", timed_command(seed, cli_runs, env), base)
        )
        asyncio.run(in_process(args.runs, Path(tmp)))
        asyncio.run(http_throughput(160, Path(tmp), env))


if __name__ == "__main__":
    main()
