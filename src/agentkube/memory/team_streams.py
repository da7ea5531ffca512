"""Where an agent's streams live in Redis: the names the runtime (its task queue,
:mod:`agentkube.runtime.task_queue`; its incidents, :mod:`agentkube.runtime.incidents`) and the
operator (KEDA's trigger, the pending count, the incident Events) share.
"""

from __future__ import annotations

from agentkube.memory.state import check_id
from agentkube.memory.tenancy import key_prefix

GROUP = "workers"  # the one consumer group of every agent's task stream
INCIDENTS = "incidents"  # the last part of an agent's incident stream's key
INCIDENT_GROUP = "operator"  # the operator's consumer group on it: what it has read


def queue_base(prefix: str, agent: str) -> str:
    """The prefix of one agent's keys (its queue, its incidents) under a namespace's prefix."""
    return f"{prefix}teams:{check_id('agent', agent)}:"


def task_stream(namespace: str, agent: str) -> str:
    """The stream of ``agent``'s accepted tasks in ``namespace``."""
    return queue_base(key_prefix(namespace), agent) + "tasks"


def incident_stream(namespace: str, agent: str) -> str:
    """The bounded stream of ``agent``'s incidents in ``namespace`` (what the operator posts as
    Events on the Agent)."""
    return queue_base(key_prefix(namespace), agent) + INCIDENTS
