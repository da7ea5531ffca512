"""The durable hand-off, measured: latency, throughput, redelivery, 1 vs 3 replicas.

    .venv/bin/python benchmarks/teams_bench.py [--tasks 2000] [--concurrency 64]
        [--claim-idle 1] [--kills 3] [--kill-tasks 1000]

Starts a real redis-server on loopback (AOF, ``appendfsync everysec``, as deploy/memory runs
it) and replicas as separate processes (this script in ``worker`` mode), each running
:class:`~agentkube.runtime.handoff.DurableTasks` over :class:`RedisTaskQueue` with an executor
that makes no model call: no run at all (the queue alone), or a pydantic-ai agent run on a
``FunctionModel`` that answers at once — so what is measured is the hand-off, not a model.
Prints a Markdown table.

* hand-off latency: a task's ``started_at - created_at`` (submit → an executor starts it);
* throughput: tasks submitted (``submit_many``) → the results stream holds every result,
  tasks/s (the records are read and checked after the clock stops);
* redelivery: a replica is SIGKILLed mid-task; time until another replica starts the task;
* kills: ``--kill-tasks`` 20 ms tasks through 3 replicas while one at a time is SIGKILLed and
  replaced ``--kills`` times; every task must have exactly one result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from measuring import percentile  # noqa: E402

AGENT = "worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- worker mode


class _NoRun:
    """The queue alone: a "run" that returns a fixed outcome without pydantic-ai."""

    def __init__(self, runtime: Any) -> None:
        self.key, self.agent, self.budget = runtime.key, runtime.agent, runtime.budget

    async def run(self, task: str, **_: Any) -> Any:
        from agentkube.runtime.agent import RunOutcome

        if task.startswith("slow"):
            await asyncio.sleep(60)
        elif task.startswith("work"):  # a short run, so that kills land mid-task
            await asyncio.sleep(0.02)
        return RunOutcome(agent=AGENT, output="done", model="none", tool_calls=[], duration_ms=0)


async def run_worker(
    redis_url: str, namespace: str, claim_idle: float, concurrency: int, executor_kind: str
) -> None:
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from agentkube.api.loading import parse_documents
    from agentkube.api.models import Agent
    from agentkube.memory.state.redis import RedisState
    from agentkube.memory.tenancy import key_prefix
    from agentkube.runtime.agent import AgentRuntime
    from agentkube.runtime.handoff import DurableTasks
    from agentkube.runtime.model_resolution import ModelChoice
    from agentkube.runtime.task_queue import RedisTaskQueue
    from agentkube.runtime.tools import ToolEnvironment

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        text = str(getattr(messages[-1].parts[-1], "content", ""))
        if text.startswith("slow"):
            await asyncio.sleep(60)
        return ModelResponse(parts=[TextPart("done")])

    doc = f"apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {{name: {AGENT}}}\n"
    agent = parse_documents(doc + "spec: {model: m, memory: none}\n")[0]
    assert isinstance(agent, Agent)
    runtime = AgentRuntime(
        agent,
        choice=ModelChoice(requested="m", kind="offline", model_id="none"),
        model=FunctionModel(answer),
        tools=ToolEnvironment(),
    )
    store = RedisState(redis_url, namespace)
    queue = RedisTaskQueue(store.client, key_prefix(namespace), AGENT, claim_idle_s=claim_idle)
    executor: Any = runtime if executor_kind == "agent" else _NoRun(runtime)
    tasks = DurableTasks(executor, queue, concurrency=concurrency, claim_idle_s=claim_idle)
    tasks.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await tasks.drain()
    await store.aclose()


# --------------------------------------------------------------------------- measuring


class Bench:
    def __init__(
        self, redis_url: str, claim_idle: float, concurrency: int, executor: str = "agent"
    ) -> None:
        self.executor = executor
        from agentkube.memory.state.redis import RedisState
        from agentkube.memory.tenancy import key_prefix
        from agentkube.runtime.task_queue import RedisTaskQueue

        self.redis_url, self.claim_idle, self.concurrency = redis_url, claim_idle, concurrency
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.store = RedisState(redis_url, self.namespace)
        self.queue = RedisTaskQueue(
            self.store.client, key_prefix(self.namespace), AGENT, claim_idle_s=claim_idle
        )
        self.workers: list[subprocess.Popen[str]] = []

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            process = subprocess.Popen(
                [sys.executable, __file__, "worker", "--redis", self.redis_url,
                 "--namespace", self.namespace, "--claim-idle", str(self.claim_idle),
                 "--concurrency", str(self.concurrency), "--executor", self.executor],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("a worker did not start")
            self.workers.append(process)

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
        self.workers.clear()

    async def submit(self, texts: list[str]) -> list[str]:
        """Every task in ``texts`` in as few ``MULTI`` transactions as the queue allows."""
        from agentkube.runtime.task_queue import TaskState

        now = time.time()
        states = [
            TaskState(id=uuid.uuid4().hex, status="queued", task=text, conversation="bench",
                      created_at=now)
            for text in texts
        ]  # fmt: skip
        await self.queue.submit_many(states)
        return [state.id for state in states]

    async def wait_finished(self, count: int, timeout: float) -> None:
        """Until the results stream holds ``count`` entries."""
        deadline = time.monotonic() + timeout
        finished = 0
        while time.monotonic() < deadline:
            finished = int(await self.store.client.xlen(self.queue.results_stream))
            if finished >= count:
                return
            await asyncio.sleep(0.001)
        raise SystemExit(f"only {finished} of {count} tasks finished in {timeout}s")

    async def collect(
        self, ids: list[str], started: float, timeout: float
    ) -> tuple[float, list[Any], dict[str, int]]:
        """Seconds from ``started`` until every task of ``ids`` has a result (the clock stops
        there), then their records and how often each id is in the results stream."""
        await self.wait_finished(len(ids), timeout)
        elapsed = time.perf_counter() - started
        return elapsed, await self.records(ids), await self.result_counts()

    async def records(self, ids: list[str]) -> list[Any]:
        return [await self.queue.read(i) for i in ids]

    async def result_counts(self) -> dict[str, int]:
        """How many times each task id is in the results stream (one result each: 1)."""
        counts: dict[str, int] = {}
        for _entry, fields in await self.store.client.xrange(self.queue.results_stream):
            task_id = fields[b"id"].decode()
            counts[task_id] = counts.get(task_id, 0) + 1
        return counts


async def throughput(
    args: argparse.Namespace, redis_url: str, replicas: int, executor: str = "agent"
) -> list[str]:
    bench = Bench(redis_url, max(args.claim_idle, 10.0), args.concurrency, executor)
    what = "an agent run (FunctionModel)" if executor == "agent" else "no run (queue alone)"
    bench.start_workers(replicas)
    try:
        idle = []
        for i in range(args.latency_samples):  # nothing queued: the hand-off alone
            (one,) = await bench.submit([f"alone {i}"])
            await bench.wait_finished(i + 1, timeout=60)
            (state,) = await bench.records([one])
            idle.append((state.started_at - state.created_at) * 1000)
        await bench.store.client.delete(bench.queue.results_stream)
        started = time.perf_counter()
        ids = await bench.submit([f"task {i}" for i in range(args.tasks)])
        submitted = time.perf_counter() - started
        elapsed, states, counts = await bench.collect(ids, started, timeout=600)
    finally:
        bench.stop_workers()
        await bench.store.aclose()
    odd = [s for s in states if s is None or s.started_at is None]
    for s in odd[:5]:
        print(f"never started: {s!r}", file=sys.stderr)
    queued = [(s.started_at - s.created_at) * 1000 for s in states if s not in odd]
    results = [s for s in states if s is not None and s.status == "succeeded"]
    twice = sum(1 for n in counts.values() if n > 1)
    return [
        f"| **executor: {what}** | | | |",
        f"| hand-off latency, one task at a time, {replicas} replica(s) "
        f"| {percentile(idle, 0.5):.1f} ms | {percentile(idle, 0.95):.1f} ms | |",
        f"| submit → start with {args.tasks} submitted at once (queueing included) "
        f"| {percentile(queued, 0.5):.0f} ms | {percentile(queued, 0.95):.0f} ms | |",
        f"| tasks/s through the queue, {replicas} replica(s), concurrency {args.concurrency} "
        f"({args.tasks} tasks; submitting alone {args.tasks / submitted:.0f}/s) "
        f"| {args.tasks / elapsed:.0f} /s | | ≥ 2,000 /s |",
        f"| results: {len(results)} succeeded of {args.tasks}, {twice} with two results "
        f"| | | 0 lost |",
    ]


async def kills(args: argparse.Namespace, redis_url: str) -> list[str]:
    """``--kill-tasks`` short tasks through 3 replicas while one replica at a time is
    SIGKILLed and replaced, ``--kills`` times: every task must end with exactly one result."""
    import random

    bench = Bench(redis_url, args.claim_idle, args.concurrency, "none")
    rng = random.Random(7)
    bench.start_workers(3)
    try:
        started = time.perf_counter()
        ids = await bench.submit([f"work {i}" for i in range(args.kill_tasks)])
        for _ in range(args.kills):
            await asyncio.sleep(rng.uniform(0.1, 0.4))
            victim = bench.workers.pop(rng.randrange(len(bench.workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            bench.start_workers(1)
        timeout = args.claim_idle * 10 + 120
        elapsed, states, counts = await bench.collect(ids, started, timeout=timeout)
    finally:
        bench.stop_workers()
        await bench.store.aclose()
    lost = sum(1 for s in states if s is None or s.status != "succeeded")
    twice = sum(1 for n in counts.values() if n > 1)
    redelivered = sum(1 for s in states if s is not None and s.deliveries > 1)
    return [
        f"| {args.kill_tasks} tasks (20 ms each) through 3 replicas, {args.kills} SIGKILLed "
        f"and replaced: {redelivered} redelivered, {lost} lost, {twice} with two results, "
        f"{elapsed:.1f} s in all | {lost} lost, {twice} duplicated | | 0 lost, 0 duplicated |"
    ]


async def redelivery(args: argparse.Namespace, redis_url: str) -> list[str]:
    bench = Bench(redis_url, args.claim_idle, 1)
    samples = []
    try:
        for _ in range(args.kills):
            bench.start_workers(1)
            (task_id,) = await bench.submit(["slow task"])
            while True:  # until the first replica runs it
                state = await bench.queue.read(task_id)
                if state is not None and state.status == "running":
                    break
                await asyncio.sleep(0.01)
            victim = bench.workers[0]
            bench.start_workers(1)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed = time.time()
            deadline = time.monotonic() + args.claim_idle + 30
            while time.monotonic() < deadline:
                state = await bench.queue.read(task_id)
                if state is not None and state.deliveries >= 2:
                    break
                await asyncio.sleep(0.01)
            assert state is not None and state.started_at is not None
            samples.append(state.started_at - killed)
            bench.stop_workers()
    finally:
        bench.stop_workers()
        await bench.store.aclose()
    return [
        f"| redelivery after SIGKILL (claim-idle {args.claim_idle:g} s, {args.kills} kills) "
        f"| {percentile(samples, 0.5):.2f} s | {max(samples):.2f} s (max) "
        f"| ≤ claim-idle + 1 s |"
    ]


async def main(args: argparse.Namespace) -> None:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit(
            "redis-server is missing: make setup-dev (or apt-get install redis-server)"
        )
    with tempfile.TemporaryDirectory(prefix="teams-bench-") as name:
        port = free_port()
        redis = subprocess.Popen(
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--dir", name,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        try:
            load_before = os.getloadavg()[0]
            rows = [
                *await throughput(args, url, 1, "none"),
                *await throughput(args, url, 3, "none"),
                *await throughput(args, url, 1),
                *await throughput(args, url, 3),
                *await redelivery(args, url),
                *await kills(args, url),
            ]
            print("| measured | p50 / rate | p95 | goal |")
            print("|---|---|---|---|")
            for row in rows:
                print(row)
            print()
            print(
                f"load average: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            )
        finally:
            redis.terminate()
            redis.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode")
    worker = sub.add_parser("worker")
    worker.add_argument("--redis", required=True)
    worker.add_argument("--namespace", required=True)
    worker.add_argument("--claim-idle", type=float, required=True)
    worker.add_argument("--concurrency", type=int, default=8)
    worker.add_argument("--executor", choices=["agent", "none"], default="agent")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--claim-idle", type=float, default=1.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-tasks", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=100)
    parsed = parser.parse_args()
    if parsed.mode == "worker":
        asyncio.run(
            run_worker(
                parsed.redis, parsed.namespace, parsed.claim_idle, parsed.concurrency,
                parsed.executor,
            )
        )  # fmt: skip
    else:
        asyncio.run(main(parsed))
