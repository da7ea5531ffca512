"""Real-node benchmark: what the test cluster's real node costs, and how fast a Job runs on it.

    .venv/bin/python benchmarks/realnode_bench.py [--runs 10] [--evented-pleg on|off|both]

Starts a test cluster in a temporary directory (control plane, then the real node), and for
each EventedPLEG setting asked for: starts the real node (timed: containerd, image import,
kubelet registered and Ready, kube-router's chains), then runs --runs sequential Jobs of
`python3 -c 'print(1)'` on runc and on gVisor, each timed from the Job's POST to its pod's
Succeeded phase and to the Job's Complete condition (both seen through watches); then stops the
node (timed). Also prints what each node piece cost to build, as build-node.sh recorded it.
Needs root and a machine no other real node runs on.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack.testcluster import binaries  # noqa: E402
from hack.testcluster.cluster import TestCluster  # noqa: E402
from hack.testcluster.realnode import Info  # noqa: E402
from lightkube import Client, KubeConfig  # noqa: E402
from lightkube.resources.batch_v1 import Job  # noqa: E402
from lightkube.resources.core_v1 import Namespace, Pod  # noqa: E402
from lightkube.types import CascadeType  # noqa: E402
from measuring import percentile  # noqa: E402


def job_manifest(name: str, node: Info, runtime: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "nodeSelector": node.node_selector,
        "tolerations": node.tolerations,
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": "main",
                "image": node.images["python"],
                "imagePullPolicy": "Never",
                "command": ["python3", "-c", "print(1)"],
            }
        ],
    }
    if runtime != "runc":
        spec["runtimeClassName"] = runtime
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }


def run_job(client: Client, namespace: str, node: Info, runtime: str) -> tuple[float, float]:
    """Seconds from POST to the pod's Succeeded, and to the Job's Complete condition."""
    name = f"bench-{secrets.token_hex(3)}"
    started = time.monotonic()
    client.create(Job.from_dict(job_manifest(name, node, runtime)), namespace=namespace)
    pod_done = job_done = 0.0
    for _, pod in client.watch(Pod, namespace=namespace, labels={"job-name": name}):
        phase = pod.status.phase if pod.status else None
        if phase == "Succeeded":
            pod_done = time.monotonic() - started
            break
        if phase == "Failed":
            raise SystemExit(f"Job {name} on {runtime} failed: {pod.status}")
    for _, job in client.watch(Job, namespace=namespace, fields={"metadata.name": name}):
        conditions = (job.status.conditions if job.status else None) or []
        if any(c.type == "Complete" and c.status == "True" for c in conditions):
            job_done = time.monotonic() - started
            break
    client.delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
    return pod_done, job_done


def node_build_costs() -> list[str]:
    pieces = binaries.locate_node().bin_dir / ".pieces"
    return pieces.read_text().splitlines() if pieces.is_file() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--evented-pleg", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.evented_pleg]

    print("node build (build-node.sh, per piece):")
    for line in node_build_costs():
        print(f"  {line}")
    with tempfile.TemporaryDirectory(prefix="realnode-bench-") as tmp:
        cluster = TestCluster(Path(tmp))
        started = time.monotonic()
        cluster.start(binaries.locate(), tie_to_parent=True)
        print(f"control plane up: {time.monotonic() - started:.1f} s")
        try:
            for pleg in settings:
                measure(cluster, pleg, args.runs)
        finally:
            cluster.stop()
    return 0


def measure(cluster: TestCluster, evented_pleg: bool, runs: int) -> None:
    label = f"EventedPLEG {'on' if evented_pleg else 'off'}"
    started = time.monotonic()
    node = cluster.start_real_node(evented_pleg=evented_pleg)
    if node is None:
        raise SystemExit(f"no real node: {cluster.real_node_unavailable}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in cluster.real_node_timings.items())
    print(f"[{label}] real node up: {time.monotonic() - started:.1f} s ({steps})")
    client = Client(KubeConfig.from_file(cluster.kubeconfig))
    namespace = f"bench-{secrets.token_hex(3)}"
    client.create(Namespace.from_dict({"metadata": {"name": namespace}}))
    time.sleep(2)  # the default ServiceAccount; Jobs here do not mount it, but admission wants it
    try:
        for runtime in ("runc", "gvisor"):
            run_job(client, namespace, node, runtime)  # warm-up: first container of a runtime
            samples = [run_job(client, namespace, node, runtime) for _ in range(runs)]
            pods = [s[0] for s in samples]
            jobs = [s[1] for s in samples]
            print(
                f"[{label}] {runtime:6} n={runs}  pod Succeeded p50 {percentile(pods, 0.5):.2f} s"
                f" p95 {percentile(pods, 0.95):.2f} s   Job Complete p50 "
                f"{percentile(jobs, 0.5):.2f} s p95 {percentile(jobs, 0.95):.2f} s"
            )
    finally:
        client.delete(Namespace, namespace)
    stopping = time.monotonic()
    cluster.stop_real_node()
    print(f"[{label}] real node down: {time.monotonic() - stopping:.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
