"""Run ``agentkube operator`` as a local process against the test control plane.

No image can be built here, so the cluster tests run the operator the way a developer would:
the real CLI, with the kubeconfig of the operator's ServiceAccount (so the RBAC of deploy/ is what
it gets) and an operator configuration whose pool profiles match the simulated nodes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.plugins.testcluster import Cluster

AGENTKUBE = Path(sys.executable).parent / "agentkube"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cluster_config(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    """Operator configuration for the simulated pools: spot by affinity, GPU by the defaults."""
    spot = cluster.pools["spot"]
    capacity_label = "node.kubernetes.io/capacity-type"
    return {
        "agentImage": "ghcr.io/openvn/agentkube:test",
        "pools": {
            "spot": {
                "tolerations": spot.tolerations,
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": capacity_label,
                                            "operator": "In",
                                            "values": [spot.labels[capacity_label]],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
            # The default GPU profile (accelerator: nvidia-tesla, nvidia.com/gpu toleration).
            "gpu": {
                "nodeSelector": {"accelerator": "nvidia-tesla"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        },
        "retrySeconds": 1,
        "resyncSeconds": 30,
        **overrides,
    }


class OperatorProcess:
    def __init__(
        self,
        cluster: Cluster,
        kubeconfig: Path,
        workdir: Path,
        config: dict[str, Any],
        *,
        namespaces: tuple[str, ...] = (),  # --namespace each; none: cluster-wide
    ):
        self.cluster = cluster
        self.namespaces = namespaces
        self.kubeconfig = kubeconfig
        self.config_path = workdir / "operator.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = workdir / "operator.log"
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            str(AGENTKUBE), "operator", "--config", str(self.config_path),
            "--metrics-port", str(self.metrics_port), "--verbose",
            *(arg for ns in self.namespaces for arg in ("--namespace", ns)),
        ]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90  # its imports alone take 15 s on a loaded machine
        while self.metrics() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the operator did not start:\n{self.tail()}", pytrace=False)
            time.sleep(0.2)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def metrics(self) -> dict[str, float] | None:
        """The operator's Prometheus samples, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("agentkube_operator_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def writes(self) -> float:
        samples = self.metrics() or {}
        return sum(
            v for k, v in samples.items() if k.startswith("agentkube_operator_api_writes_total")
        )

    def writes_in(self, namespace: str) -> int:
        """Writes the operator logged for objects of one namespace (every write is logged)."""
        pattern = re.compile(
            rf"(applied \S+|updated status of \S+|posted event \S+ on) {namespace}/"
        )
        return len(pattern.findall(self.log.read_text(errors="replace")))

    def reconciles_of(self, kind: str, namespace: str, name: str) -> int:
        """Reconciles the operator logged for one object (it logs every one with --verbose)."""
        line = f"reconciled {kind} {namespace}/{name}"
        text = self.log.read_text(errors="replace")
        return sum(1 for logged in text.splitlines() if logged.endswith(line))

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
