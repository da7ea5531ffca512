"""Tracing's overhead: on (exporting OTLP/HTTP to a real receiver) vs off, side by side in one run.

    .venv/bin/python benchmarks/telemetry_bench.py [--tasks 160] [--pairs 6] [--runs 300]
        [--sample-ratio R]

Two measures, each with a process traced and an identical one untraced, interleaved so that
drift on a busy machine hits both alike:

- runtime task throughput and CPU time per task: two `agentkube agent serve` processes (offline
  model, one sandboxed ``print(1)`` per task, 8 at once), runs of ``--tasks`` tasks from 8
  clients, submit -> last event, in ``--pairs`` ABBA/BAAB pairs of runs; the overhead is the
  median of the pairs' ratios (a pair's two sides ran at nearly the same time, so the machine's
  drift cancels), and the CPU time (the server's and its sandboxes', from /proc) is a second
  measure that a busy machine disturbs less than wall time;
- the RAG proxy's added latency: two `agentkube sidecar rag` processes in front of the
  OpenAI-compatible stand-in (retrieval over a small collection), non-streaming chat requests
  one at a time, minus the same request sent directly to the stand-in.

The receiver is the tests' (tests/telemetry/otlp_receiver.py), in a process of its own: it
decodes every export, so the traced side pays for real serialisation and HTTP, and the measuring
client does not pay for the decoding. The goal is an overhead of at most 5 %. The traced side
records every task, the default; ``--sample-ratio`` gives it ``OTEL_TRACES_SAMPLER=
parentbased_traceidratio`` with that ratio instead, to see what sampling saves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from measuring import percentile  # noqa: E402
from rag_bench import BODY, COLLECTION, fill, free_port, standin_command, timed  # noqa: E402
from rag_bench import start as rag_start  # noqa: E402

AGENT = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: bench}
spec: {model: offline, memory: none, tools: [python-interpreter]}
"""
TASK = "```python\nprint(1)\n```"
CONCURRENCY = 8


def start(args: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return rag_start(args, url, env, wait_s=600)  # minutes: a busy machine starts slowly


@dataclass
class Receiver:
    url: str
    summary: str = ""


@contextmanager
def receiver_process() -> Iterator[Receiver]:
    """The tests' OTLP receiver in a process of its own: decoding the traced side's spans must
    not take the measuring client's time (a collector runs apart from what it observes)."""
    argv = [sys.executable, "-m", "tests.telemetry.otlp_receiver"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    receiver = Receiver(url=process.stdout.readline().strip())
    if not receiver.url.startswith("http://"):
        raise SystemExit(f"the OTLP receiver did not start: {receiver.url!r}")
    try:
        yield receiver
    finally:
        process.terminate()
        receiver.summary = process.stdout.read().strip()
        process.wait(timeout=30)


def environments(
    base: dict[str, str], receiver: str, sample_ratio: float | None = None
) -> dict[str, dict[str, str]]:
    traced = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver}
    if sample_ratio is not None:
        traced |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                   "OTEL_TRACES_SAMPLER_ARG": str(sample_ratio)}  # fmt: skip
    return {"off": dict(base), "on": traced}


async def throughput(url: str, tasks: int) -> float:
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one() -> None:
            task_id = (await client.post("/v1/tasks", json={"task": TASK})).json()["id"]
            async with client.stream("GET", f"/v1/tasks/{task_id}/events") as events:
                async for _ in events.aiter_lines():
                    pass

        counter = iter(range(tasks))

        async def worker() -> None:
            for _ in counter:
                await one()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return tasks / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and of its children it has waited for (the sandboxes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def pair_order(pair: int) -> tuple[str, ...]:
    """ABBA, then BAAB: within a pair each side runs once early and once late, so a steady
    drift of the machine's speed cancels out of the pair's ratio."""
    return ("off", "on", "on", "off") if pair % 2 == 0 else ("on", "off", "off", "on")


def runtime_rows(opts: argparse.Namespace, envs: dict[str, dict[str, str]], tmp: Path) -> None:
    manifest = tmp / "bench.yaml"
    manifest.write_text(AGENT)
    servers, urls = {}, {}
    for side, env in envs.items():
        port = free_port()
        urls[side] = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "agentkube", "agent", "serve", str(manifest), "--port",
                str(port), "--concurrency", str(CONCURRENCY), "--sandbox-pool", "2"]  # fmt: skip
        servers[side] = start(
            argv, f"{urls[side]}/readyz", {**env, "AGENTKUBE_DATA_DIR": str(tmp / side)}
        )
    rate_overheads, cpu_overheads = [], []
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpus: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for url in urls.values():  # warm-up: the sandbox pool, pydantic-ai's first run
            asyncio.run(throughput(url, CONCURRENCY * 2))
        for pair in range(opts.pairs):
            pair_rates: dict[str, list[float]] = {"off": [], "on": []}
            pair_cpus: dict[str, list[float]] = {"off": [], "on": []}
            for side in pair_order(pair):
                before = cpu_seconds(servers[side].pid)
                pair_rates[side].append(asyncio.run(throughput(urls[side], opts.tasks)))
                pair_cpus[side].append((cpu_seconds(servers[side].pid) - before) / opts.tasks)
            for side in ("off", "on"):
                rates[side] += pair_rates[side]
                cpus[side] += pair_cpus[side]
            off, on = statistics.mean(pair_rates["off"]), statistics.mean(pair_rates["on"])
            rate_overheads.append((off - on) / off * 100)
            cpu_off, cpu_on = statistics.mean(pair_cpus["off"]), statistics.mean(pair_cpus["on"])
            cpu_overheads.append((cpu_on - cpu_off) / cpu_off * 100)
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print(f"\nruntime: {opts.pairs} ABBA pairs x {opts.tasks} tasks per run, {CONCURRENCY} "
          f"clients, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| tracing | tasks/s (median of runs) | CPU ms per task (median) |\n|---|---|---|")
    for side, label in (("off", "off"), ("on", "on, exporting")):
        print(f"| {label} | {statistics.median(rates[side]):.1f} | "
              f"{statistics.median(cpus[side]) * 1000:.2f} |")  # fmt: skip
    rate_median = statistics.median(rate_overheads)
    print(f"overhead, median of the pairs' ratios: throughput {rate_median:+.1f} %"
          f" (pairs {min(rate_overheads):+.1f} .. {max(rate_overheads):+.1f}), CPU per task "
          f"{statistics.median(cpu_overheads):+.1f} % (pairs {min(cpu_overheads):+.1f} .. "
          f"{max(cpu_overheads):+.1f})")  # fmt: skip
    print("runs, off: " + " ".join(f"{r:.1f}" for r in rates["off"]))
    print("runs, on:  " + " ".join(f"{r:.1f}" for r in rates["on"]))


def proxy_rows(opts: argparse.Namespace, envs: dict[str, dict[str, str]], tmp: Path) -> None:
    asyncio.run(fill(tmp, 200))
    up_port = free_port()
    standin = standin_command(up_port)
    upstream = f"http://127.0.0.1:{up_port}"
    processes = [start(standin, f"{upstream}/v1/models", envs["off"])]
    urls = {}
    try:
        for side, env in envs.items():
            port = free_port()
            urls[side] = f"http://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "agentkube", "sidecar", "rag", "--upstream",
                    f"{upstream}/v1", "--collection", COLLECTION, "--port", str(port),
                    "--data-dir", str(tmp)]  # fmt: skip
            processes.append(start(argv, f"{urls[side]}/readyz", env))
        samples = sample_proxies(opts.runs, upstream, urls)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    direct = samples["direct"]
    print(f"\nRAG proxy: {opts.runs} interleaved requests each, load {os.getloadavg()[0]:.1f}")
    print("| | p50 | p95 | added p50 | added p95 |\n|---|---|---|---|---|")
    d50, d95 = percentile(direct, 0.5), percentile(direct, 0.95)
    print(f"| direct to the stand-in | {d50:.2f} ms | {d95:.2f} ms | — | — |")
    added = {}
    for side in ("off", "on"):
        s50, s95 = percentile(samples[side], 0.5), percentile(samples[side], 0.95)
        added[side] = s50 - d50
        print(f"| proxy, tracing {side} | {s50:.2f} ms | {s95:.2f} ms | +{s50 - d50:.2f} ms | "
              f"+{s95 - d95:.2f} ms |")  # fmt: skip
    print(f"tracing adds {added['on'] - added['off']:+.2f} ms to the proxy's p50 "
          f"({(added['on'] - added['off']) / percentile(samples['off'], 0.5) * 100:+.1f} % of a "
          "proxied request)")  # fmt: skip


def sample_proxies(runs: int, upstream: str, urls: dict[str, str]) -> dict[str, list[float]]:
    cases = {"direct": f"{upstream}/v1/chat/completions"}
    cases |= {side: f"{url}/v1/chat/completions" for side, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with httpx.Client(timeout=60) as client:
        for _ in range(10):
            for url in cases.values():
                timed(client, url, {})
        for _ in range(runs):
            for name, url in cases.items():
                samples[name].append(timed(client, url, {}))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=160)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sample-ratio", type=float, default=None)
    opts = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OTEL_"))}
    base["OTEL_BSP_SCHEDULE_DELAY"] = "1000"
    sampled = "every task" if opts.sample_ratio is None else f"ratio {opts.sample_ratio:g}"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"body: {len(str(BODY))} chars; traced side samples {sampled}")  # fmt: skip
    with receiver_process() as receiver, tempfile.TemporaryDirectory() as tmp:
        envs = environments(base, receiver.url, opts.sample_ratio)
        runtime_rows(opts, envs, Path(tmp))
        proxy_rows(opts, envs, Path(tmp))
    print(f"\nthe receiver (a process of its own) decoded: {receiver.summary}")


if __name__ == "__main__":
    main()
