"""Tracing's overhead: on (exporting OTLP/HTTP to a real receiver) vs off, side by side in one run.

    .venv/bin/python benchmarks/telemetry_bench.py [--tasks 160] [--rounds 5] [--runs 200]

Two measures, each with a process traced and an identical one untraced, interleaved round by
round so that drift on a busy machine hits both alike:

- runtime task throughput: two `agentkube agent serve` processes (offline model, one sandboxed
  ``print(1)`` per task, 8 at once), ``--tasks`` tasks from 8 clients, submit -> last event;
- the RAG proxy's added latency: two `agentkube sidecar rag` processes in front of the
  OpenAI-compatible stand-in (retrieval over a small collection), non-streaming chat requests
  one at a time, minus the same request sent directly to the stand-in.

The receiver is the tests' (tests/telemetry/otlp_receiver.py): it decodes every export, so the
traced side pays for real serialisation and HTTP. The goal is an overhead of at most 5 %.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from measuring import percentile  # noqa: E402
from rag_bench import BODY, COLLECTION, fill, free_port, standin_command, timed  # noqa: E402
from rag_bench import start as rag_start  # noqa: E402
from tests.telemetry.otlp_receiver import OtlpReceiver  # noqa: E402

AGENT = """apiVersion: ai.openvn/v1
kind: Agent
metadata: {name: bench}
spec: {model: offline, memory: none, tools: [python-interpreter]}
"""
TASK = "```python\nprint(1)\n```"
CONCURRENCY = 8


def start(args: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return rag_start(args, url, env, wait_s=600)  # minutes: a busy machine starts slowly


def environments(base: dict[str, str], receiver: str) -> dict[str, dict[str, str]]:
    traced = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver}
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
    try:
        for url in urls.values():  # warm-up: the sandbox pool, pydantic-ai's first run
            asyncio.run(throughput(url, CONCURRENCY * 2))
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for round_ in range(opts.rounds):  # which side goes first alternates, round by round
            for side in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                rates[side].append(asyncio.run(throughput(urls[side], opts.tasks)))
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=30)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"\nruntime: {opts.rounds} rounds x {opts.tasks} tasks, {CONCURRENCY} clients, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| tracing | tasks/s (median of rounds) | overhead |\n|---|---|---|")
    print(f"| off | {off:.1f} | — |")
    print(f"| on, exporting | {on:.1f} | {(off - on) / off * 100:+.1f} % |")
    print("rounds, off: " + " ".join(f"{r:.1f}" for r in rates["off"]))
    print("rounds, on:  " + " ".join(f"{r:.1f}" for r in rates["on"]))


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    opts = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OTEL_"))}
    base["OTEL_BSP_SCHEDULE_DELAY"] = "1000"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"body: {len(str(BODY))} chars")  # fmt: skip
    with OtlpReceiver().running() as receiver, tempfile.TemporaryDirectory() as tmp:
        envs = environments(base, receiver.url)
        runtime_rows(opts, envs, Path(tmp))
        proxy_rows(opts, envs, Path(tmp))
        print(f"\nthe receiver decoded {len(receiver.spans)} spans in {receiver.requests} exports")


if __name__ == "__main__":
    main()
