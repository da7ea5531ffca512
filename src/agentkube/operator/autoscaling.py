"""Executors scaled on their queue by KEDA (pure): the ScaledObject and its TriggerAuthentication.

With ``spec.autoscale`` on an executor (and shared memory's Redis configured), the operator
renders, next to the Deployment:

- a ``TriggerAuthentication`` (``keda.sh/v1alpha1``) whose ``username`` and ``password`` come
  from the namespace's ``agentkube-memory`` Secret — the namespace's Redis ACL user, which may
  read its own streams and nothing else; no credential is copied;
- a ``ScaledObject`` with one ``redis-streams`` trigger on the agent's task stream and consumer
  group (:mod:`agentkube.memory.team_streams`), ``lagCount`` = ``lagTarget``: KEDA runs one
  replica per ``lagTarget`` entries not yet delivered, between ``minReplicas`` (0 is allowed:
  KEDA activates the Deployment on the first entry) and ``maxReplicas``.

The Deployment is then rendered without ``spec.replicas``, so the replicas are KEDA's (its HPA
writes them through the scale subresource) and the drift check never undoes them. Whether KEDA is
installed, and what of it exists, is :mod:`agentkube.operator.autoscaling_sync`'s.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agentkube.api.models import Agent, Autoscale
from agentkube.memory.team_streams import GROUP, task_stream
from agentkube.operator.memory import PASSWORD_KEY, SECRET_NAME, USERNAME_KEY, url_port
from agentkube.operator.naming import agent_labels, metadata, owner_reference, stamp

JSON = dict[str, Any]

KEDA_API = "keda.sh/v1alpha1"
KINDS = ("TriggerAuthentication", "ScaledObject")
CONDITION = "Autoscaling"


def redis_trigger(agent: Agent, namespace: str, redis_url: str, autoscale: Autoscale) -> JSON:
    """The ``redis-streams`` trigger on ``agent``'s queue (its values are strings, as KEDA's)."""
    parts = urlsplit(redis_url)
    meta = {
        "address": f"{parts.hostname}:{url_port(redis_url)}",
        "stream": task_stream(namespace, agent.metadata.name),
        "consumerGroup": GROUP,
        "lagCount": str(autoscale.lag_target),
    }
    database = parts.path.strip("/")
    if database:
        meta["databaseIndex"] = database
    if parts.scheme == "rediss":
        meta["enableTLS"] = "true"
    return {
        "type": "redis-streams",
        "metadata": meta,
        "authenticationRef": {"name": agent.metadata.name},
    }


def render_scaling(agent: Agent, namespace: str, redis_url: str) -> list[JSON]:
    """The TriggerAuthentication and ScaledObject of an Agent with ``spec.autoscale``."""
    autoscale = agent.spec.autoscale
    if autoscale is None:
        return []
    name = agent.metadata.name
    owner = owner_reference("Agent", name, agent.metadata.uid or "")
    credentials = [
        {"parameter": param, "name": SECRET_NAME, "key": key}
        for param, key in (("username", USERNAME_KEY), ("password", PASSWORD_KEY))
    ]
    authentication = {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": metadata(name, namespace, agent_labels(name), owner),
        "spec": {"secretTargetRef": credentials},
    }
    scaled = {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": metadata(name, namespace, agent_labels(name), owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": autoscale.min_replicas,
            "maxReplicaCount": autoscale.max_replicas,
            "triggers": [redis_trigger(agent, namespace, redis_url, autoscale)],
        },
    }
    return [stamp(authentication), stamp(scaled)]


def replicas_left_to_keda(children: list[JSON]) -> list[JSON]:
    """``children`` with the Deployment's ``spec.replicas`` removed (and its hash renewed)."""
    result = []
    for child in children:
        if child["kind"] == "Deployment":
            spec = {k: v for k, v in child["spec"].items() if k != "replicas"}
            child = stamp({**child, "spec": spec})
        result.append(child)
    return result
