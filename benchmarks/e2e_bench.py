"""End-to-end benchmark: the README's "On a cluster" on the test cluster's real node, timed.

It does what `make e2e` does (tests/e2e: `kubectl apply -k deploy/namespaced` from the project's
image, the seed manifest verbatim plus a Model whose URL is the model stand-in pod) and measures:

- time from `kubectl apply` of the seed manifest to the Agent's Ready, and to its first answer;
- task latency through Service → agent pod → gateway → sandbox pod on gVisor → answer, p50/p95
  over --tasks sequential tasks, side by side with the same task through `agentkube agent serve`
  on this machine (the embedded mode: offline model, local sandbox) as the baseline;
- resident memory of the operator, gateway and agent pods (their cgroups' rss, after the tasks).

Needs a running test cluster with its real node: `hack/testcluster/testcluster up` (the state
directory is AGENTKUBE_TESTCLUSTER_DIR or .cache/testcluster); root.

    .venv/bin/python benchmarks/e2e_bench.py [--tasks 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hack.testcluster.cluster import TestCluster
from measuring import percentile
from tests.e2e.conftest import AGENTS_NS, SYSTEM_NS, install, plain
from tests.e2e.steps import wait_for
from tests.e2e.workload import (
    AGENT,
    ANSWER,
    SEED,
    TASK,
    agent_ready,
    apply_seed,
    run_task,
    service_url,
)
from tests.plugins.project_image import build_project_image
from tests.plugins.testcluster import Cluster, handle

REPO = Path(__file__).resolve().parents[1]
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def attach() -> Cluster:
    state_dir = Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", REPO / ".cache" / "testcluster"))
    control_plane = TestCluster(state_dir)
    control_plane.attach()
    if control_plane.real_node is None:
        raise SystemExit(f"no real node: {control_plane.real_node_unavailable}")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is not on PATH")
    return handle(control_plane, kubectl)


def timed_task(client: httpx.Client) -> float:
    """One task, submit to result (polled every 10 ms); seconds."""
    start = time.perf_counter()
    response = client.post("/v1/tasks", json={"task": TASK})
    response.raise_for_status()
    task_id = response.json()["id"]
    while True:
        view = client.get(f"/v1/tasks/{task_id}").json()
        if view["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.01)
    if view["status"] != "succeeded" or ANSWER not in view["result"]["output"]:
        raise SystemExit(f"task {task_id} was not answered: {view}")
    return time.perf_counter() - start


def latencies(url: str, tasks: int) -> list[float]:
    with httpx.Client(base_url=url, timeout=120.0) as client:
        timed_task(client)  # warm-up: first model connection, first sandbox
        return [timed_task(client) for _ in range(tasks)]


def embedded(tasks: int) -> list[float]:
    """The same task through `agentkube agent serve` on this machine (offline model)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agentkube = REPO / ".venv" / "bin" / "agentkube"
    argv = [str(agentkube), "agent", "serve", str(SEED), "--port", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("agentkube agent serve did not become ready")
            time.sleep(0.1)
        return latencies(url, tasks)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def pod_rss_mib(cluster: Cluster, namespace: str, selector: str) -> float:
    """The rss of the pod's cgroup (memory.stat total_rss), MiB."""
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    if not running:
        raise SystemExit(f"no running pod for {selector} in {namespace}")
    uid = running[0]["metadata"]["uid"]
    stats = list(CGROUP_MEMORY.glob(f"agentkube-realnode/**/pod{uid}/memory.stat"))
    if not stats:
        raise SystemExit(f"no memory cgroup for pod {uid}")
    for line in stats[0].read_text().splitlines():
        name, value = line.split()
        if name == "total_rss":
            return int(value) / 2**20
    raise SystemExit(f"no total_rss in {stats[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    cluster = attach()
    image = build_project_image()
    rows: list[tuple[str, str]] = []
    with plain(cluster) as node, install(cluster, node, image) as reference:
        began = time.monotonic()
        apply_seed(cluster, reference, AGENTS_NS)
        wait_for(cluster, f"agent {AGENT} to be Ready", lambda: agent_ready(cluster, AGENTS_NS),
                 timeout=300, namespaces=(AGENTS_NS, SYSTEM_NS))  # fmt: skip
        ready_s = time.monotonic() - began
        url = service_url(cluster, AGENTS_NS)
        run_task(cluster, url, AGENTS_NS)
        first_s = time.monotonic() - began
        in_cluster = latencies(url, args.tasks)
        rss = {
            "operator": pod_rss_mib(
                cluster, SYSTEM_NS, "app.kubernetes.io/name=agentkube-operator"
            ),
            "gateway": pod_rss_mib(
                cluster, SYSTEM_NS, "app.kubernetes.io/name=agentkube-sandbox-gateway"
            ),
            "agent": pod_rss_mib(cluster, AGENTS_NS, f"app.kubernetes.io/instance={AGENT}"),
        }
    local = embedded(args.tasks)
    rows.append(("seed manifest applied → Agent Ready", f"{ready_s:.1f} s"))
    rows.append(("seed manifest applied → first task answered", f"{first_s:.1f} s"))
    for name, samples in (("in the cluster (Service → pod → gateway → gVisor)", in_cluster),
                          ("embedded baseline (agent serve, local sandbox)", local)):  # fmt: skip
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        rows.append((f"task latency, {name}, p50 / p95", f"{p50 * 1000:.0f} / {p95 * 1000:.0f} ms"))
    ratio = percentile(in_cluster, 0.5) / percentile(local, 0.5)
    rows.append(("in the cluster / embedded, p50", f"{ratio:.1f}x"))
    for name, mib in rss.items():
        rows.append((f"{name} pod rss", f"{mib:.0f} MiB"))
    print(f"\nend to end, {args.tasks} sequential tasks each, load {os.getloadavg()[0]:.1f}")
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
