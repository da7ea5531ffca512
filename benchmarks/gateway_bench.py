"""Sandbox gateway benchmark: overhead per execution on the real test control plane.

    .venv/bin/python benchmarks/gateway_bench.py [--runs 30] [--concurrency 4] [--pool 4]
                                                 [--output BYTES] [--real-node-only]
                                                 [--runtimes runc,gvisor] [--no-cold]
                                                 [--handovers attach,exec,annotation]

Starts a test cluster with its real node (or attaches to `hack/testcluster/testcluster up` with
AGENTKUBE_TESTCLUSTER_ATTACH=1), registers the sandbox kubelet stand-in (tests/standins/ —
kwok runs no containers), serves the gateway on loopback (uvicorn, the real HTTP path, static
token) with the Kubernetes backend, and measures, per execution of `print(1)`:

    overhead = (request sent -> result received) - the code's own run time (result.duration_ms)

for the cold Job path and the warm pool, sequentially (p50/p95) and with --concurrency agents at
once (executions per second). ``--output BYTES`` prints that many bytes instead: beyond 4 KiB the
result no longer fits the termination message and comes back through the pod log. Baseline in
the same run: the same HTTP gateway in front of the local backend (no cluster at all), and the
stand-in's own cost (one local-sandbox run of the pod runner), which a real kubelet replaces with
its container start. Then the same paths with the pods in real containers on the real node
(containerd), on runc and on gVisor, the warm pool once per ``--handovers`` way: its requests
handed over by ``pods/attach`` to the runner's stdin (the default), by ``pods/exec`` (where
attach is refused) and by the pod's annotation (the fallback where the gateway may do neither);
their sequential runs each start on a full pool (the claim's own cost; the concurrent agents
then drain it, and misses take the cold path). Each row prints the end-to-end time
(request sent -> result received) and the overhead, p50/p95. The stand-in kubelet cannot exec:
its warm pods get their requests by annotation.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack.testcluster import binaries  # noqa: E402
from hack.testcluster.cli import DEFAULT_STATE_DIR  # noqa: E402
from hack.testcluster.cluster import TestCluster  # noqa: E402
from lightkube import AsyncClient, KubeConfig  # noqa: E402
from measuring import kubectl, percentile  # noqa: E402
from tests.realnode.pods import real_node_settings  # noqa: E402
from tests.standins.sandbox_kubelet import LOG_BYTES, running_sandbox_kubelet  # noqa: E402
from tests.standins.serving import serve  # noqa: E402

from agentkube.gateway.app import GatewaySettings, create_app  # noqa: E402
from agentkube.gateway.auth import StaticTokens  # noqa: E402
from agentkube.gateway.client import RemoteSandbox  # noqa: E402
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Sandbox  # noqa: E402
from agentkube.sandbox.kubernetes import KubernetesSandbox  # noqa: E402
from agentkube.sandbox.kubernetes.rendering import PodSettings  # noqa: E402
from agentkube.sandbox.local import LocalSandbox  # noqa: E402
from agentkube.sandbox.policy import DEFAULT_POLICY  # noqa: E402

POOL_LABEL = "agentkube.openvn/pool"


def workload(output_bytes: int) -> tuple[ExecutionRequest, str]:
    """The request each execution sends and the stdout it must return."""
    if output_bytes <= 0:
        return ExecutionRequest(code="print(1)"), "1\n"
    size = output_bytes - 1  # print's newline is the last byte
    return ExecutionRequest(code=f"print('x' * {size})"), "x" * size + "\n"


async def timed(
    sandbox: Sandbox, work: tuple[ExecutionRequest, str]
) -> tuple[float, ExecutionResult]:
    request, expected = work
    started = time.perf_counter()
    result = await sandbox.execute(request)
    wall = (time.perf_counter() - started) * 1000
    if result.stdout != expected:
        raise SystemExit(f"unexpected result: {result!r}"[:2000])
    return wall, result


async def sequential(
    sandbox: Sandbox,
    work: tuple[ExecutionRequest, str],
    runs: int,
    ready: Callable[[], bool] | None = None,
) -> list[tuple[float, float]]:
    """(end-to-end wall time, overhead) of each of runs executions, one after another; each
    after ``ready()`` (a full warm pool: the claim's own cost, not a refill's) if given."""
    times = []
    for _ in range(runs):
        while ready is not None and not ready():
            await asyncio.sleep(0.05)
        wall, result = await timed(sandbox, work)
        times.append((wall, wall - result.duration_ms))
    return times


async def throughput(
    make: Callable[[], Sandbox], work: tuple[ExecutionRequest, str], runs: int, concurrency: int
) -> float:
    clients = [make() for _ in range(concurrency)]
    per_client = max(1, runs // concurrency)

    async def agent(sandbox: Sandbox) -> None:
        for _ in range(per_client):
            await timed(sandbox, work)

    started = time.perf_counter()
    await asyncio.gather(*(agent(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    return per_client * concurrency / elapsed


def report(
    name: str, times: list[tuple[float, float]], rate: float | None, standin: float | None = None
) -> None:
    """One row: end-to-end p50/p95, overhead p50/p95 (minus the code's own run time), rate."""
    walls, overheads = [w for w, _ in times], [o for _, o in times]
    rate_text = f"{rate:6.1f}/s" if rate is not None else "     -  "
    line = (
        f"{name:<40} e2e p50 {statistics.median(walls):7.1f} p95 {percentile(walls, 0.95):7.1f}"
        f"   overhead p50 {statistics.median(overheads):7.1f} ms "
        f"p95 {percentile(overheads, 0.95):7.1f} ms   {rate_text}"
    )
    if standin is not None:
        line += f"   minus stand-in: p50 {statistics.median(overheads) - standin:6.1f} ms"
    print(line)


async def standin_cost(
    settings: PodSettings, request: ExecutionRequest, runs: int
) -> list[tuple[float, float]]:
    """What the stand-in itself costs per pod: the pod runner started in the local sandbox under
    the pod's limits, minus the code's own run time (a real kubelet's container start instead)."""
    import json
    import shlex

    from agentkube.sandbox.contract import Limits
    from agentkube.sandbox.kubernetes.rendering import render_job

    spec = render_job("x", request, settings)["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env["AGENTKUBE_TERMINATION_LOG"] = "out/termination-log"
    pod_command = ExecutionRequest(
        language="bash",
        env=env,
        code=shlex.join(container["command"]),
        limits=Limits(cpu=0.5, memory_bytes=128 * 1024 * 1024, output_bytes=LOG_BYTES),
    )
    # The stand-in runs the pod's whole runner, whose log line may be as large as its own cap.
    policy = DEFAULT_POLICY.model_copy(update={"max_output_bytes": LOG_BYTES})
    sandbox = LocalSandbox(pool_size=2, policy=policy)
    await sandbox.start()
    costs = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await sandbox.execute(pod_command)
        wall = (time.perf_counter() - started) * 1000
        cost = wall - json.loads(result.files["termination-log"])["ms"]
        costs.append((wall, cost))
    await sandbox.aclose()
    return costs


def measure(
    url: str,
    work: tuple[ExecutionRequest, str],
    runs: int,
    concurrency: int,
    tokens: dict[str, str],
    ready: Callable[[], bool] | None = None,
) -> tuple[list[tuple[float, float]], float]:
    def client(token: str = "bench-0") -> Sandbox:
        return RemoteSandbox(url, token=lambda: token)

    async def run() -> tuple[list[tuple[float, float]], float]:
        one = client()
        await timed(one, work)  # warm-up: first connection, first pod
        times = await sequential(one, work, runs, ready)
        await one.aclose()
        names = iter(tokens)
        rate = await throughput(lambda: client(next(names)), work, runs, concurrency)
        return times, rate

    return asyncio.run(run())


def kube_gateway(
    kubeconfig: Path,
    settings: PodSettings,
    pool: int,
    tokens: StaticTokens,
    concurrency: int,
    *,
    how: str = "attach",
) -> tuple[Any, KubernetesSandbox]:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig))
    backend = KubernetesSandbox(
        client,
        settings,
        warm_pool=pool,
        pod_exec=how != "annotation",
        pod_attach=how == "attach",
    )
    limits = GatewaySettings(max_concurrent_per_agent=concurrency)
    app = create_app(backend, tokens, limits, kube_client=client)
    return app, backend


def real_node(
    cluster: TestCluster,
    namespace: str,
    work: tuple[ExecutionRequest, str],
    args: argparse.Namespace,
    tokens: StaticTokens,
    token_names: dict[str, str],
) -> None:
    """The same gateway with its pods in real containers on the real node: runc and gVisor."""
    node = cluster.real_node
    if node is None:
        print(f"real node: none ({cluster.real_node_unavailable})")
        return
    for runtime in args.runtimes.split(","):
        settings = real_node_settings(node, namespace, runtime)
        if not args.no_cold:
            cold, _ = kube_gateway(cluster.kubeconfig, settings, 0, tokens, args.concurrency)
            with serve(cold) as url:
                times, rate = measure(url, work, args.runs, args.concurrency, token_names)
            report(f"real node {runtime}, cold Job path", times, rate)
        for how in args.handovers.split(","):
            warm_settings = dataclasses.replace(settings, gateway=f"bench-w-{secrets.token_hex(2)}")
            app, warm = kube_gateway(
                cluster.kubeconfig,
                warm_settings,
                args.pool,
                tokens,
                args.concurrency,
                how=how,
            )
            full = lambda backend=warm: backend.warm_count() >= args.pool  # noqa: E731
            with serve(app) as url:
                times, rate = measure(url, work, args.runs, args.concurrency, token_names, full)
            report(f"real node {runtime}, warm pool ({args.pool}), by {how}", times, rate)
            assert warm.warm is not None
            print(
                f"  warm pool: {warm.warm.claims} claims ({warm.warm.handovers} handed over by "
                f"{how}), {warm.warm.misses} misses (cold path); load {os.getloadavg()[0]:.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4, help="warm pool size")
    parser.add_argument(
        "--real-node-only", action="store_true", help="skip the local and stand-in rows"
    )
    parser.add_argument(
        "--runtimes", default="runc,gvisor", help="the real node's runtimes, comma-separated"
    )
    parser.add_argument(
        "--handovers",
        default="attach,exec,annotation",
        help="the warm pool's ways to hand a request over, comma-separated",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the real node's cold Job rows")
    parser.add_argument(
        "--output", type=int, default=0, help="bytes each execution prints (default: print(1))"
    )
    args = parser.parse_args()
    work = workload(args.output)
    what = f"print of {args.output} bytes" if args.output > 0 else "print(1)"

    attach = os.environ.get("AGENTKUBE_TESTCLUSTER_ATTACH") == "1"
    state = (
        Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", DEFAULT_STATE_DIR))
        if attach
        else (Path(tempfile.mkdtemp(prefix="gateway-bench-")))
    )
    cluster = TestCluster(state)
    if attach:
        cluster.attach()
    else:
        cluster.start(binaries.locate(), tie_to_parent=True)
        cluster.start_real_node()
    kubeconfig = cluster.kubeconfig
    node = f"sandbox-kubelet-bench-{secrets.token_hex(2)}"
    namespace = f"sandbox-bench-{secrets.token_hex(2)}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    kubectl(
        kubeconfig, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    token_names = {f"bench-{i}": f"agent-{i}" for i in range(max(args.concurrency, 1))}
    tokens = StaticTokens(token_names)
    print(
        f"gateway benchmark: {args.runs} sequential runs of {what}, then {args.concurrency} "
        f"concurrent agents; warm pool {args.pool}; load {os.getloadavg()[0]:.1f}"
    )
    try:
        if not args.real_node_only:
            standin_rows(cluster, node, namespace, work, args, tokens, token_names)
        real_node(cluster, namespace, work, args, tokens, token_names)
    finally:
        kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")
        kubectl(kubeconfig, "delete", "node", node, "--wait=false", "--ignore-not-found")
        if not attach:
            cluster.stop()
    return 0


def standin_rows(
    cluster: TestCluster,
    node: str,
    namespace: str,
    work: tuple[ExecutionRequest, str],
    args: argparse.Namespace,
    tokens: StaticTokens,
    token_names: dict[str, str],
) -> None:
    """The local baseline, then the gateway's two paths with the kubelet stand-in's pods."""
    kubeconfig = cluster.kubeconfig
    taint = {"key": POOL_LABEL, "value": "sandbox", "effect": "NoSchedule"}
    serving = cluster.kubelet_serving_cert(node)
    with running_sandbox_kubelet(
        kubeconfig,
        node,
        {POOL_LABEL: "sandbox"},
        [taint],
        (serving.cert, serving.key),
        warm_sandboxes=2,
    ):
        kubectl(kubeconfig, "wait", "--for=condition=Ready", f"node/{node}", "--timeout=60s")
        settings = PodSettings(
            namespace=namespace,
            gateway=f"bench-{secrets.token_hex(2)}",
            node_selector={POOL_LABEL: "sandbox", "kubernetes.io/hostname": node},
        )
        local_app = create_app(
            LocalSandbox(), tokens, GatewaySettings(max_concurrent_per_agent=args.concurrency)
        )
        with serve(local_app) as url:
            overheads, rate = measure(url, work, args.runs, args.concurrency, token_names)
        report("baseline: gateway + local backend", overheads, rate)

        costs = asyncio.run(standin_cost(settings, work[0], args.runs))
        standin = statistics.median(c for _, c in costs)
        report("stand-in kubelet: runner start + exit", costs, None)

        cold_app, _ = kube_gateway(kubeconfig, settings, 0, tokens, args.concurrency)
        with serve(cold_app) as url:
            overheads, rate = measure(url, work, args.runs, args.concurrency, token_names)
        report("kubernetes, cold Job path", overheads, rate, standin)

        warm_settings = PodSettings(
            **{**settings.__dict__, "gateway": f"bench-warm-{secrets.token_hex(2)}"}
        )
        app, warm = kube_gateway(
            kubeconfig, warm_settings, args.pool, tokens, args.concurrency, how="annotation"
        )
        with serve(app) as url:
            overheads, rate = measure(url, work, args.runs, args.concurrency, token_names)
        report(f"kubernetes, warm pool ({args.pool} pods)", overheads, rate, standin)
        assert warm.warm is not None
        print(f"warm pool: {warm.warm.claims} claims, {warm.warm.misses} misses (cold path)")


if __name__ == "__main__":
    sys.exit(main())
