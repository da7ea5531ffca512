"""Where an agent's task queue lives in Redis: the names the runtime's queue
(:mod:`agentkube.runtime.task_queue`) and the operator (KEDA's trigger, the pending count) share.
"""

from __future__ import annotations

from agentkube.memory.state import check_id
from agentkube.memory.tenancy import key_prefix

GROUP = "workers"  # the one consumer group of every agent's stream


def queue_base(prefix: str, agent: str) -> str:
    """The prefix of one agent's queue keys under a namespace's key prefix."""
    return f"{prefix}teams:{check_id('agent', agent)}:"


def task_stream(namespace: str, agent: str) -> str:
    """The stream of ``agent``'s accepted tasks in ``namespace``."""
    return queue_base(key_prefix(namespace), agent) + "tasks"
