"""RAG sidecar benchmark: what the proxy adds in front of a model, side by side in one run.

    make bench-deps      # wrk, the load generator of the rate rows (Debian's package)
    .venv/bin/python benchmarks/rag_bench.py [--runs 300] [--chunks 10000] [--concurrency 16]

Three processes on loopback: the lean OpenAI-compatible stand-in (tests/standins/lean_openai.py,
a raw asyncio server answering from prepared bytes) as the upstream, the real
`agentkube sidecar rag` in front of it reading a collection of ``--chunks`` chunks (embedded
Chroma, the local wordllama embedder), and this client (httpx, keep-alive). Interleaved, per
request (non-streaming chat completion, one user question):

    direct        client -> stand-in                        the baseline
    pass-through  client -> proxy (x-agentkube-rag: off) -> stand-in
    retrieval     client -> proxy (embed, top-4 of N chunks, inject) -> stand-in

and the time to the first streamed byte (stream: true) direct vs through the proxy with
retrieval. Added latency = proxied p50/p95 minus direct p50/p95. Then the proxy process's CPU
time per pass-through request (``/proc``, over ``--cpu-runs`` sequential ones), steadier than
latency on a loaded machine. Then requests/s with ``--concurrency`` connections at once, from
``wrk`` (C, its own process: a Python client would be the bottleneck), ``--seconds`` each:
direct, pass-through, retrieval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from measuring import percentile  # noqa: E402

from agentkube.memory.embeddings.local import WordLlamaEmbedder  # noqa: E402
from agentkube.memory.vectors.chroma import EmbeddedChroma  # noqa: E402

COLLECTION = "bench"
WORDS = [
    "operator", "agent", "sandbox", "model", "memory", "vector", "cluster", "node", "pool",
    "gateway", "proxy", "token", "policy", "network", "volume", "secret", "config", "deploy",
    "image", "probe", "replica", "service", "namespace", "label", "quota", "timeout", "retry",
    "stream", "chunk", "embed", "search", "index", "shard", "cache", "queue", "worker",
]  # fmt: skip
BODY = {
    "model": "standin-model",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How much memory does a sandbox get by default?"},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(data_dir: Path, chunks: int) -> None:
    embedder = WordLlamaEmbedder()
    store = EmbeddedChroma(data_dir / "vectors", "default")
    rng = random.Random(7)
    await store.open_collection(COLLECTION, embedder.name, embedder.dimension)
    for start in range(0, chunks, 1000):
        ids = [f"c{i}" for i in range(start, min(chunks, start + 1000))]
        texts = [" ".join(rng.choices(WORDS, k=60)) for _ in ids]
        metas = [{"source": f"/docs/note-{i}.md", "chunk": 0} for i in range(len(ids))]
        await store.upsert(COLLECTION, ids, await embedder.embed(texts), texts, metas)
    await store.aclose()


def standin_command(port: int) -> list[str]:
    """The lean OpenAI-compatible stand-in (tests/standins/lean_openai.py) on ``port``."""
    return [sys.executable, "-m", "tests.standins.lean_openai", "--port", str(port)]


WRK_SCRIPT = ROOT / "benchmarks" / "rag_post.lua"


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: run `make bench-deps` (apt-get install -y wrk)")
    return found


def start(
    args: list[str], url: str, env: dict[str, str], wait_s: float = 120.0
) -> subprocess.Popen[bytes]:
    """``args`` started, once ``url`` answers 200 within ``wait_s``."""
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{args[:4]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered")


def timed(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.post(url, json=BODY, headers=headers)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def first_byte(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    elapsed = 0.0
    with client.stream("POST", url, json={**BODY, "stream": True}) as response:
        for n, _ in enumerate(response.iter_raw()):
            if n == 0:
                elapsed = (time.perf_counter() - started) * 1000
    return elapsed


def rate(url: str, headers: dict[str, str], concurrency: int, seconds: int) -> float:
    """Requests/s ``wrk`` sees with ``concurrency`` keep-alive connections (all must be 2xx)."""
    args = [
        wrk_binary(), "-t2", f"-c{concurrency}", f"-d{seconds}s", "-s", str(WRK_SCRIPT), url,
        "--", json.dumps(BODY), *(f"{k}: {v}" for k, v in headers.items()),
    ]  # fmt: skip
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failures:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise SystemExit(f"no rate in wrk's output:\n{out}")
    return float(found.group(1))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def row(name: str, samples: list[float], base: list[float] | None) -> str:
    p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
    if base is None:
        return f"| {name} | {p50:.2f} ms | {p95:.2f} ms | — | — |"
    b50, b95 = percentile(base, 0.5), percentile(base, 0.95)
    return f"| {name} | {p50:.2f} ms | {p95:.2f} ms | +{p50 - b50:.2f} ms | +{p95 - b95:.2f} ms |"


def measure(runs: int, cases: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(10):  # warm-up: connections, the index, the embedder
        for fn in cases.values():
            fn()
    for _ in range(runs):
        for name, fn in cases.items():  # interleaved: drift hits every case alike
            samples[name].append(fn())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--cpu-runs", type=int, default=1000)
    opts = parser.parse_args()
    wrk_binary()  # before minutes of filling the collection
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKUBE_")}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        asyncio.run(fill(data, opts.chunks))
        print(f"filled {opts.chunks} chunks in {time.perf_counter() - started:.1f}s")
        up_port, proxy_port = free_port(), free_port()
        standin = standin_command(up_port)
        upstream = start(standin, f"http://127.0.0.1:{up_port}/v1/models", env)
        proxy_cmd = [
            sys.executable, "-m", "agentkube", "sidecar", "rag",
            "--upstream", f"http://127.0.0.1:{up_port}/v1", "--collection", COLLECTION,
            "--port", str(proxy_port), "--data-dir", str(data),
        ]  # fmt: skip
        proxy = start(proxy_cmd, f"http://127.0.0.1:{proxy_port}/readyz", env)
        try:
            report(opts, f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{proxy_port}", proxy.pid)
        finally:
            for process in (proxy, upstream):
                process.terminate()
                process.wait(timeout=30)


def report(opts: argparse.Namespace, upstream: str, proxy: str, proxy_pid: int) -> None:
    direct, proxied = f"{upstream}/v1/chat/completions", f"{proxy}/v1/chat/completions"
    off = {"x-agentkube-rag": "off"}
    with httpx.Client(timeout=60) as client:
        check = client.post(proxied, json=BODY)
        print(f"retrieval injects {check.headers['x-agentkube-rag-chunks']} chunks per request")
        samples = measure(
            opts.runs,
            {
                "direct": lambda: timed(client, direct, {}),
                "pass-through": lambda: timed(client, proxied, off),
                "retrieval": lambda: timed(client, proxied, {}),
                "ttfb direct": lambda: first_byte(client, direct),
                "ttfb retrieval": lambda: first_byte(client, proxied),
            },
        )
        cpu_before = cpu_seconds(proxy_pid)
        for _ in range(opts.cpu_runs):
            timed(client, proxied, off)
        cpu_us = (cpu_seconds(proxy_pid) - cpu_before) / opts.cpu_runs * 1e6
    load = os.getloadavg()[0]
    print(f"\n{opts.runs} interleaved requests each, {opts.chunks} chunks, load {load:.1f}")
    print("| | p50 | p95 | added p50 | added p95 |\n|---|---|---|---|---|")
    print(row("direct to the stand-in", samples["direct"], None))
    print(row("through the proxy, pass-through", samples["pass-through"], samples["direct"]))
    print(
        row(
            f"through the proxy, retrieval over {opts.chunks}",
            samples["retrieval"],
            samples["direct"],
        )
    )
    print(row("first streamed byte, direct", samples["ttfb direct"], None))
    print(
        row(
            "first streamed byte, proxy + retrieval",
            samples["ttfb retrieval"],
            samples["ttfb direct"],
        )
    )
    print(
        f"\nproxy CPU time per pass-through request: {cpu_us:.0f} µs "
        f"({opts.cpu_runs} sequential requests, load {os.getloadavg()[0]:.1f})"
    )
    rates = {}
    for name, url, headers in (
        ("direct", direct, {}),
        ("pass-through", proxied, off),
        ("retrieval", proxied, {}),
    ):
        rates[name] = rate(url, headers, opts.concurrency, opts.seconds)
        rates[name + " load"] = os.getloadavg()[0]
    print(
        f"\n| wrk, {opts.concurrency} connections, {opts.seconds} s each | requests/s | load |"
        "\n|---|---|---|"
    )
    for name in ("direct", "pass-through", "retrieval"):
        print(f"| {name} | {rates[name]:.0f} | {rates[name + ' load']:.1f} |")


if __name__ == "__main__":
    main()
