"""The simulated nodes: two spot CPU nodes, one GPU node, one sandbox node.

Every node is tainted, as real pools are, so a pod lands on a pool only when it asks for it;
`Pool.tolerations` and `Pool.node_selector` are what a pod spec needs to get there. kwok manages
the nodes carrying the `kwok.x-k8s.io/node: fake` annotation: it marks them Ready, keeps their
leases, runs the pods bound to them and completes pods owned by a Job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
POOL_LABEL = "agentkube.openvn/pool"


@dataclass(frozen=True, kw_only=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


@dataclass(frozen=True, kw_only=True)
class Pool:
    """A node pool: its nodes' labels, taints and capacity."""

    name: str
    nodes: tuple[str, ...]
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    capacity: dict[str, str]

    @property
    def node_selector(self) -> dict[str, str]:
        return {POOL_LABEL: self.name}

    @property
    def tolerations(self) -> list[dict[str, str]]:
        return [t.toleration() for t in self.taints]


_CPU = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}

POOLS: dict[str, Pool] = {
    pool.name: pool
    for pool in (
        Pool(
            name="spot",
            nodes=("kwok-spot-0", "kwok-spot-1"),
            labels={POOL_LABEL: "spot", "node.kubernetes.io/capacity-type": "spot"},
            taints=(Taint(key="node.kubernetes.io/capacity-type", value="spot"),),
            capacity=_CPU,
        ),
        Pool(
            name="gpu",
            nodes=("kwok-gpu-0",),
            labels={POOL_LABEL: "gpu", "accelerator": "nvidia-tesla"},
            taints=(Taint(key="nvidia.com/gpu", value="present"),),
            capacity={**_CPU, "cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"},
        ),
        Pool(
            name="sandbox",
            nodes=("kwok-sandbox-0",),
            labels={POOL_LABEL: "sandbox"},
            taints=(Taint(key=POOL_LABEL, value="sandbox"),),
            capacity=_CPU,
        ),
    )
}


def node_manifests() -> list[dict[str, Any]]:
    """Node objects for every pool, ready to POST to /api/v1/nodes."""
    return [_node(pool, name) for pool in POOLS.values() for name in pool.nodes]


def _node(pool: Pool, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": dict(KWOK_ANNOTATION),
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **pool.labels,
            },
        },
        "spec": {"taints": [t.to_json() for t in pool.taints]},
        "status": {"allocatable": dict(pool.capacity), "capacity": dict(pool.capacity)},
    }
