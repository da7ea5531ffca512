"""Memory figures, side by side in one run: embedded stores against servers on loopback.

- ingest: chunks per second through ``agentkube.memory.ingestion.ingest`` (chunking, wordllama
  embedding in batches, adds) into embedded Chroma, and wordllama's embedding rate alone;
- search: p50/p95 of one ``search()`` (embed the query + nearest 5) at 10k and 100k chunks,
  embedded Chroma against a ``chroma run`` server;
- sessions: p50/p95 of one load + append of a conversation turn, SQLite against Redis;
- resident memory of this process and of each server.

The 100k collections hold random unit vectors (embedding 100k chunks would take minutes and
does not change what a query costs); the 10k ones hold real wordllama vectors of the text.

Usage: .venv/bin/python benchmarks/memory_bench.py [--queries N] [--sessions N] [--big N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measuring import percentile  # noqa: E402

from agentkube.memory.embeddings.local import WordLlamaEmbedder  # noqa: E402
from agentkube.memory.ingestion import Document, ingest, search  # noqa: E402
from agentkube.memory.state import Retention, StateStore  # noqa: E402
from agentkube.memory.state.redis import RedisState  # noqa: E402
from agentkube.memory.state.sqlite import SqliteState  # noqa: E402
from agentkube.memory.vectors import VectorStore  # noqa: E402
from agentkube.memory.vectors.chroma import ChromaServer, EmbeddedChroma  # noqa: E402

VOCABULARY = """
agent cluster memory vector redis session pod kubernetes operator sandbox model query document
chunk embedding search retrieval tenant namespace policy network storage volume the a of to and
in is that for it with as on be by this are from at or an was which we deploy scale replica
service ingress secret config token latency throughput failure retry
"""
WORDS = VOCABULARY.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(
    argv: list[str], port: int, log: Path, ready: Callable[[], bool]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{argv[0]} exited: {log.read_text()[-1000:]}")
        try:
            if ready():
                return process
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{argv[0]} did not start on port {port}: {log}")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def corpus(rng: random.Random, documents: int, sections: int) -> list[Document]:
    docs = []
    for d in range(documents):
        body = "\n\n".join(
            f"## Section {s}\n\n" + " ".join(sentence(rng, 12) for _ in range(8))
            for s in range(sections)
        )
        docs.append(
            Document(source=f"/bench/doc{d}.md", text=f"# Doc {d}\n\n{body}", markdown=True)
        )
    return docs


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start_ = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start_) * 1000)
    return samples


def row(name: str, samples: list[float], goal: str = "") -> str:
    p50, p95 = statistics.median(samples), percentile(samples, 0.95)
    return f"| {name} | {p50:.2f} ms | {p95:.2f} ms | {goal} |"


async def fill_random(
    store: VectorStore, name: str, count: int, rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.float32]]:
    await store.open_collection(name, "wordllama:l2_supercat-256", 256)
    every = []
    for start_ in range(0, count, 2000):
        n = min(2000, count - start_)
        vectors = rng.standard_normal((n, 256)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"r{start_ + i}" for i in range(n)]
        texts = [f"random chunk {start_ + i}" for i in range(n)]
        metas = [{"source": "/bench/random", "chunk": start_ + i} for i in range(n)]
        await store.add(name, ids, vectors, texts, metas)
        every.append(vectors)
    return np.concatenate(every)


async def bench_vectors(args: argparse.Namespace, tmp: Path, chroma_url: str) -> list[str]:
    embedder = WordLlamaEmbedder()
    await embedder.embed(["warm up"])
    rng = random.Random(7)
    docs = corpus(rng, documents=args.docs, sections=10)
    texts = [sentence(rng, 60) for _ in range(2000)]
    t0 = time.perf_counter()
    await embedder.embed(texts)
    embed_rate = len(texts) / (time.perf_counter() - t0)

    out = []
    embedded: VectorStore = EmbeddedChroma(tmp / "vectors")
    server: VectorStore = ChromaServer(chroma_url)
    rates = {}
    for label, store in (("embedded", embedded), ("server", server)):
        t0 = time.perf_counter()
        report = await ingest(store, embedder, "small", docs)
        rates[label] = report.added / (time.perf_counter() - t0)
    chunks = report.chunks
    t0 = time.perf_counter()
    again = await ingest(embedded, embedder, "small", docs)
    reingest_ms = (time.perf_counter() - t0) * 1000
    assert again.added == 0
    alone = f"wordllama embedding alone (~{len(texts[0])}-char texts)"
    out.append(f"| {alone} | {embed_rate:,.0f} chunks/s | | >= 2,000 |")
    for label, rate in rates.items():
        out.append(
            f"| ingest {chunks:,} chunks, {label} Chroma | {rate:,.0f} chunks/s | | >= 2,000 |"
        )
    out.append(
        f"| re-ingest of the same {chunks:,} chunks (nothing changed) | {reingest_ms:,.0f} ms | | |"
    )

    queries = [sentence(rng, 6) for _ in range(args.queries)]
    nprng = np.random.default_rng(7)
    for store in (embedded, server):
        matrix = await fill_random(store, "big", args.big, nprng)
    results: dict[tuple[str, str], list[float]] = {}
    for collection, size in (("small", chunks), ("big", args.big)):
        for label, store in (("embedded", embedded), ("server", server)):
            it = iter(queries * 2)
            await search(store, embedder, collection, "warm up", 5)
            results[(collection, label)] = await timed(
                lambda s=store, c=collection, q=it: search(s, embedder, c, next(q), 5), args.queries
            )
            goal = "p50 <= 5 ms" if (collection, label) == ("big", "embedded") else ""
            out.append(
                row(f"search top-5, {size:,} chunks, {label}", results[(collection, label)], goal)
            )
    # Where a search's time goes at the larger size, and a baseline in the same run: exact search
    # by one matrix-vector product in numpy over the same vectors.
    probe = await embedder.embed(["where does the time go"])
    big = f"{args.big:,}"

    async def exact() -> None:
        np.argpartition(matrix @ probe[0], -5)[-5:]

    raw = embedded._collections["big"]  # type: ignore[attr-defined]
    include: Any = ["documents", "metadatas", "distances"]

    async def inline() -> None:  # the same call in this thread: no hop, no lock, no checks
        raw.query(query_embeddings=probe, n_results=5, include=include)

    parts = [
        ("- of which: embedding the query", lambda: embedder.embed(queries[:1])),
        (
            f"- of which: Chroma query alone, {big}, embedded",
            lambda: embedded.query("big", probe, 5),
        ),
        (f"- of which: Chroma's own call, {big}, embedded, inline", inline),
        (f"- of which: Chroma query alone, {big}, server", lambda: server.query("big", probe, 5)),
        (f"baseline: exact numpy search over {big} vectors", exact),
    ]
    for name, call in parts:
        out.append(row(name, await timed(call, args.queries)))
    await embedded.aclose()
    await server.aclose()
    return out


async def bench_sessions(args: argparse.Namespace, tmp: Path, redis_url: str) -> list[str]:
    turn = os.urandom(1024).hex().encode()  # ~2 KiB: one run's messages
    out = []
    stores: list[tuple[str, StateStore]] = [
        ("SQLite", SqliteState(tmp / "state.sqlite3", retention=Retention(max_turns=20))),
        ("Redis", RedisState(redis_url, retention=Retention(max_turns=20))),
    ]
    for label, store in stores:
        for _ in range(20):
            await store.append_turn("bench", "c1", turn)

        async def round_trip(s: StateStore = store) -> None:
            await s.load_turns("bench", "c1")
            await s.append_turn("bench", "c1", turn)

        samples = await timed(round_trip, args.sessions)
        goal = "p50 <= 1 ms" if label == "Redis" else ""
        out.append(row(f"session load (20 turns of 2 KiB) + append, {label}", samples, goal))
        loads = await timed(lambda s=store: s.load_turns("bench", "c1"), args.sessions)
        out.append(row(f"- of which: load alone, {label}", loads))
        await store.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit(
            "redis-server is missing: make setup-dev (or apt-get install redis-server)"
        )
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as name:
        tmp = Path(name)
        redis_port, chroma_port = free_port(), free_port()
        redis = start(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", name,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            redis_port, tmp / "redis.log",
            lambda: socket.create_connection(("127.0.0.1", redis_port), 0.2).close() is None,
        )  # fmt: skip
        chroma_url = f"http://127.0.0.1:{chroma_port}"
        chroma = start(
            [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp / "chroma"),
             "--host", "127.0.0.1", "--port", str(chroma_port)],
            chroma_port, tmp / "chroma.log",
            lambda: httpx.get(f"{chroma_url}/api/v2/heartbeat", timeout=1).status_code == 200,
        )  # fmt: skip
        try:
            load_before = os.getloadavg()[0]
            sessions = await bench_sessions(args, tmp, f"redis://127.0.0.1:{redis_port}/0")
            vectors = await bench_vectors(args, tmp, chroma_url)
            print("| measured | p50 / rate | p95 | goal |")
            print("|---|---|---|---|")
            for line in vectors + sessions:
                print(line)
            print()
            print(
                f"resident memory: this process (embedded Chroma + wordllama) peak "
                f"{rss_mib():.0f} MiB; chroma server {rss_mib(chroma.pid):.0f} MiB; "
                f"redis {rss_mib(redis.pid):.0f} MiB"
            )
            print(
                f"load average: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            )
        finally:
            for process in (chroma, redis):
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
