"""Operator benchmark: apply N Agents to the real test control plane and time the operator.

    .venv/bin/python benchmarks/operator_bench.py [--agents 500] [--no-ready]

Starts a test cluster (or attaches to `hack/testcluster/testcluster up` with
AGENTKUBE_TESTCLUSTER_ATTACH=1), installs deploy/, runs `agentkube operator` as a local process
and prints:

- time until every Agent has all its children (the operator's own work), and until every Agent
  is Ready (this also waits for the controller manager, scheduler and kwok to run the pods);
- API writes per Agent while creating, and per reconcile once nothing changed (goal: 0);
- the operator's resident memory, now and at its peak (goal: <= 200 MB);
- how long a child's event takes to reconcile its owner (a label put on an Agent's Deployment,
  until the operator's reconcile counter moves).

The operator watches only the benchmark's namespace; it is deleted while the operator still runs
(an engine with finalizers needs it to let the Agents go). At commit 0492853 it also took
``--engine queue,kopf``: the side-by-side figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack.testcluster import binaries  # noqa: E402
from hack.testcluster.cli import DEFAULT_STATE_DIR  # noqa: E402
from hack.testcluster.cluster import TestCluster  # noqa: E402
from hack.testcluster.nodes import POOLS  # noqa: E402
from measuring import kubectl, percentile  # noqa: E402

AGENTKUBE = Path(sys.executable).parent / "agentkube"


def operator_config() -> dict[str, Any]:
    spot = POOLS["spot"]
    return {
        "agentImage": "ghcr.io/openvn/agentkube:bench",
        "pools": {
            "spot": {"nodeSelector": spot.node_selector, "tolerations": spot.tolerations},
            "gpu": {"nodeSelector": {"accelerator": "nvidia-tesla"}},
        },
        "resyncSeconds": 3600,
    }


def agents_manifest(count: int) -> str:
    docs = [
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Model",
            "metadata": {"name": "m"},
            "spec": {"endpoint": {"url": "https://llm.example.com/v1"}},
        }
    ]
    docs += [
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {"name": f"agent-{i:04d}"},
            "spec": {
                "model": "m",
                "tools": ["python-interpreter"],
                "memory": "ephemeral",
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}},
            },
        }
        for i in range(count)
    ]
    return yaml.safe_dump_all(docs)


async def create_all(kubeconfig: Path, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Create the objects 50 at a time, as many clients would: kubectl applies one by one."""
    from lightkube import AsyncClient, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource

    kinds = {
        k: create_namespaced_resource("ai.openvn", "v1", k, f"{k.lower()}s")
        for k in ("Agent", "Model")
    }
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), namespace=namespace)
    slots = asyncio.Semaphore(50)

    async def create(doc: dict[str, Any]) -> None:
        async with slots:
            await client.create(kinds[doc["kind"]].from_dict(doc), namespace=namespace)

    await asyncio.gather(*(create(d) for d in docs))
    await client.close()


def metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("agentkube_operator_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def writes(port: int) -> float:
    return sum(
        v for k, v in metrics(port).items() if k.startswith("agentkube_operator_api_writes_total")
    )


def reconciles(port: int) -> float:
    return metrics(port).get("agentkube_operator_reconciles_total", 0.0)


def owner_patches(kubeconfig: Path) -> float:
    """PATCHes of Agents, Models and MCPServers themselves (not their status), counted by the
    API server: kopf's finalizers, which the operator's own counter does not see."""
    total = 0.0
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="PATCH"' in line:
            owner = any(f'resource="{r}"' in line for r in ("agents", "models", "mcpservers"))
            if owner and 'subresource=""' in line:
                total += float(line.rpartition(" ")[2])
    return total


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready_count(kubeconfig: Path, namespace: str) -> tuple[int, int]:
    items = json.loads(kubectl(kubeconfig, "get", "agents", "-n", namespace, "-o", "json"))["items"]
    ready = reconciled = 0
    for item in items:
        for c in (item.get("status") or {}).get("conditions") or []:
            ready += c["type"] == "Ready" and c["status"] == "True"
            reconciled += c["type"] == "Reconciled" and c["status"] == "True"
    return reconciled, ready


def run(count: int, timeout: float, pokes: int, ready: bool) -> None:
    attach = os.environ.get("AGENTKUBE_TESTCLUSTER_ATTACH") == "1"
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    attached_dir = Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", DEFAULT_STATE_DIR))
    cluster = TestCluster(attached_dir if attach else workdir / "cluster")
    if attach:
        cluster.attach()
    else:
        cluster.start(binaries.locate(), tie_to_parent=True)
    kubeconfig = cluster.kubeconfig
    try:
        kubectl(kubeconfig, "apply", "--server-side", "-k", str(ROOT / "deploy"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd/agents.ai.openvn")
        run_operator(kubeconfig, workdir, count, timeout, pokes, ready)
    finally:
        if not attach:
            cluster.stop()


def run_operator(
    kubeconfig: Path,
    workdir: Path,
    count: int,
    timeout: float,
    pokes: int,
    ready: bool,
) -> None:
    namespace = f"bench-{int(time.time())}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    config = workdir / "operator.yaml"
    config.write_text(yaml.safe_dump(operator_config()))
    port = 19090
    log = (workdir / "operator.log").open("wb")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    argv = [str(AGENTKUBE), "operator", "--config", str(config), "--metrics-port", str(port)]
    operator = subprocess.Popen(
        [*argv, "--namespace", namespace],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        print(f"load average at the start                {load()}")
        measure(kubeconfig, namespace, operator.pid, port, count, timeout, workdir, ready)
        latencies = asyncio.run(poke_children(kubeconfig, namespace, port, pokes))
        print(
            f"child event -> owner reconciled p50/p95  {percentile(latencies, 0.5) * 1000:.0f} ms"
            f" / {percentile(latencies, 0.95) * 1000:.0f} ms  ({len(latencies)} events)"
        )
        print(f"load average at the end                  {load()}", flush=True)
    finally:
        # Deleted while the operator runs (an engine with finalizers needs it to).
        kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")
        kubectl(kubeconfig, "wait", "--for=delete", f"namespace/{namespace}", "--timeout=600s")
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()  # a loaded machine: kopf's shutdown outlasts its own 5 s grace
            operator.wait()


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


async def poke_children(kubeconfig: Path, namespace: str, port: int, pokes: int) -> list[float]:
    """Label one Agent's Deployment at a time; the time until a reconcile is counted."""
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.apps_v1 import Deployment

    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), namespace=namespace)
    latencies = []
    for i in range(pokes):
        before = reconciles(port)
        start = time.monotonic()
        patch = {"metadata": {"labels": {"bench-poke": str(i)}}}
        await client.patch(Deployment, f"agent-{i:04d}", patch, namespace=namespace)
        while reconciles(port) == before:
            if time.monotonic() - start > 30:
                raise SystemExit(f"no reconcile 30 s after labelling Deployment agent-{i:04d}")
            await asyncio.sleep(0.005)
        latencies.append(time.monotonic() - start)
        await asyncio.sleep(0.2)  # let the operator's own follow-up events pass
    await client.close()
    return latencies


def measure(
    kubeconfig: Path,
    namespace: str,
    pid: int,
    port: int,
    count: int,
    timeout: float,
    workdir: Path,
    wait_ready: bool = True,
) -> None:
    deadline = time.monotonic() + 120  # its imports alone take 15 s on a loaded machine
    while True:
        try:
            metrics(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the operator did not start") from None
            time.sleep(0.2)
    manifest = workdir / "agents.yaml"
    manifest.write_text(agents_manifest(count))
    patches_before = owner_patches(kubeconfig)
    start = time.monotonic()
    asyncio.run(create_all(kubeconfig, namespace, list(yaml.safe_load_all(manifest.read_text()))))
    applied_at = time.monotonic() - start
    # kwok nodes take 110 pods each: the spot pool runs at most this many agents at once.
    room = min(count, 110 * len(POOLS["spot"].nodes)) if wait_ready else 0
    reconciled_at: float | None = None
    while True:
        reconciled, ready = ready_count(kubeconfig, namespace)
        now = time.monotonic() - start
        if reconciled_at is None and reconciled == count:
            reconciled_at = now
        if ready >= room and reconciled_at is not None:
            ready_at = now
            break
        if now > timeout:
            raise SystemExit(f"only {reconciled} Reconciled, {ready} Ready after {timeout:.0f}s")
        time.sleep(1)
    create_writes = writes(port) + owner_patches(kubeconfig) - patches_before
    cpu_busy = cpu_seconds(pid)
    # Settle: pods of a full pool stay Pending, and their Deployments' status still moves.
    last, quiet_since = writes(port), time.monotonic()
    while time.monotonic() - quiet_since < 5:
        time.sleep(1)
        if writes(port) != last:
            last, quiet_since = writes(port), time.monotonic()
    before_w, before_r = writes(port) + owner_patches(kubeconfig), reconciles(port)
    # Make the operator reconcile every Agent again without changing anything it renders.
    kubectl(kubeconfig, "label", "agents", "--all", "-n", namespace, "bench-touch=1")
    deadline = time.monotonic() + 60
    while reconciles(port) - before_r < count and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    # Less the benchmark's own label patches, one per Agent.
    idle_writes = writes(port) + owner_patches(kubeconfig) - count - before_w
    idle_reconciles = reconciles(port) - before_r
    rss, peak = rss_mb(pid)
    print(f"agents                                   {count}")
    print(f"creating all agents (50 at a time)       {applied_at:.1f} s")
    print(f"until every agent is Reconciled          {reconciled_at:.1f} s")
    print(f"until {room} agents are Ready            {ready_at:.1f} s")
    print(
        f"API writes per agent while creating      {create_writes / count:.2f}  (kopf's included)"
    )
    print(
        f"API writes per unchanged reconcile       {idle_writes / max(idle_reconciles, 1):.3f}"
        f"  ({idle_writes:.0f} writes / {idle_reconciles:.0f} reconciles)"
    )
    print(f"operator CPU time until Ready            {cpu_busy:.1f} s")
    print(f"operator RSS now / peak                  {rss:.0f} MB / {peak:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--pokes", type=int, default=30, help="child events timed")
    parser.add_argument(
        "--no-ready", action="store_true", help="do not wait for the pods (only for Reconciled)"
    )
    args = parser.parse_args(argv)
    run(args.agents, args.timeout, args.pokes, not args.no_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
