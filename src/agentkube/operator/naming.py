"""Names, labels and owner references of the objects the operator makes.

An Agent's children share the Agent's name (one of each kind), so its Service is reachable as
``<agent>.<namespace>.svc``. A Model's children get a ``-model`` suffix and an MCPServer's a
``-mcp`` suffix, so an Agent, a Model and an MCPServer may share a name without colliding.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentkube.api.models import API_VERSION

JSON = dict[str, Any]

AGENT_LABEL = "ai.openvn/agent"
MODEL_LABEL = "ai.openvn/model"
MCPSERVER_LABEL = "ai.openvn/mcpserver"
MANAGED_BY = "agentkube-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
HASH_ANNOTATION = "ai.openvn/applied-hash"
CONFIG_HASH_ANNOTATION = "ai.openvn/config-hash"
MAX_NAME = 63


def digest(obj: object, length: int = 16) -> str:
    """A stable short hash of a JSON-able value."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bounded_name(name: str, suffix: str) -> str:
    """``name + suffix``, shortened with a hash so the result stays a 63-character DNS label."""
    full = f"{name}{suffix}"
    if len(full) <= MAX_NAME:
        return full
    tag = digest(name, 8)
    keep = MAX_NAME - len(suffix) - len(tag) - 1
    return f"{name[:keep].rstrip('-')}-{tag}{suffix}"


def model_child_name(model: str) -> str:
    return bounded_name(model, "-model")


def mcpserver_child_name(server: str) -> str:
    return bounded_name(server, "-mcp")


def agent_pods() -> dict[str, str]:
    """The label every agent's pods carry (what NetworkPolicies let in as "agents")."""
    return {"app.kubernetes.io/component": "agent"}


def agent_selector(name: str) -> dict[str, str]:
    """The labels selecting an agent's pods; part of an immutable Deployment selector."""
    return {AGENT_LABEL: name, **agent_pods()}


def model_selector(name: str) -> dict[str, str]:
    return {MODEL_LABEL: name, "app.kubernetes.io/component": "model-server"}


def mcpserver_selector(name: str) -> dict[str, str]:
    return {MCPSERVER_LABEL: name, "app.kubernetes.io/component": "mcp-server"}


def common_labels(component: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "agentkube",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "agentkube",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def agent_labels(name: str) -> dict[str, str]:
    return {**common_labels("agent", name), AGENT_LABEL: name}


def model_labels(name: str) -> dict[str, str]:
    return {**common_labels("model-server", name), MODEL_LABEL: name}


def mcpserver_labels(name: str) -> dict[str, str]:
    return {**common_labels("mcp-server", name), MCPSERVER_LABEL: name}


def owner_reference(kind: str, name: str, uid: str) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(name: str, namespace: str, labels: dict[str, str], owner: JSON, **extra: Any) -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner],
        **extra,
    }


def stamp(obj: JSON) -> JSON:
    """Record the hash of the rendered object in an annotation, so removing a field is a change.

    The drift check compares the desired object with a *superset* (the live object has defaults
    and other managers' fields); a field the operator stopped rendering would go unnoticed without
    this hash.
    """
    meta = obj["metadata"]
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != HASH_ANNOTATION}
    applied_hash = digest({**obj, "metadata": {**meta, "annotations": annotations}})
    return {
        **obj,
        "metadata": {**meta, "annotations": {**annotations, HASH_ANNOTATION: applied_hash}},
    }
