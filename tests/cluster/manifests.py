"""Small manifest builders shared by the cluster smoke tests."""

from __future__ import annotations

import json
from typing import Any

from hack.testcluster.nodes import Pool

IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok plays the kubelet


def pod_spec(pool: Pool | None = None, **container: Any) -> dict[str, Any]:
    """A one-container pod spec, placed on pool (its node selector and tolerations) if given."""
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": IMAGE, **container}]}
    if pool is not None:
        spec["nodeSelector"] = pool.node_selector
        spec["tolerations"] = pool.tolerations
    return spec


def pod(name: str, spec: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
