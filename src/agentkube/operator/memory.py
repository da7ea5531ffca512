"""Shared memory in agent pods (pure): which servers an agent uses, its env, its credentials.

With ``memory`` configured (:class:`~agentkube.operator.config.MemoryServers`):

- **Redis** — every agent uses it: the durable task hand-off (docs/teams.md) and shared state.
  Each agent namespace has one Secret, ``agentkube-memory``, holding its Redis ACL user's
  password and the server's URL with those credentials; agent pods read ``AGENTKUBE_REDIS_URL``
  from it through a ``secretKeyRef``, so no credential is in a pod spec. The operator generates
  the password once and keeps it (:mod:`agentkube.operator.memory_access`).
- **Chroma** — the agents that use vectors (``memory: persistent``: remember/recall; ``spec.rag``:
  knowledge search) get ``AGENTKUBE_VECTOR_URL``; their RAG sidecar reads the same server.
  ``AGENTKUBE_NAMESPACE`` (set on every agent pod) selects the tenant on both servers.

Unset, nothing is passed and every pod keeps its memory embedded, as on one machine.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentkube.api import pod_contract as pc
from agentkube.api.models import Agent
from agentkube.memory.tenancy import namespace_url, redis_username
from agentkube.operator.naming import common_labels, stamp

if TYPE_CHECKING:  # config.py imports the sidecars, which import this module
    from agentkube.operator.config import OperatorConfig, Peer, RedisServer, VectorServer

JSON = dict[str, Any]

SECRET_NAME = "agentkube-memory"  # noqa: S105 - a name
URL_KEY = "redis-url"
USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 - a key name
COMPONENT = "memory-credentials"


def redis_server(config: OperatorConfig) -> RedisServer | None:
    return config.memory.redis if config.memory is not None else None


def vector_server(config: OperatorConfig) -> VectorServer | None:
    return config.memory.vector if config.memory is not None else None


def uses_vectors(agent: Agent) -> bool:
    """Whether the runtime opens a vector store (its memory tools, docs/memory.md)."""
    return agent.spec.memory == "persistent" or agent.spec.rag is not None


def memory_env(agent: Agent, config: OperatorConfig) -> list[JSON]:
    """The agent container's memory servers (its tenant is ``AGENTKUBE_NAMESPACE``)."""
    env: list[JSON] = []
    if redis_server(config) is not None:
        ref = {"secretKeyRef": {"name": SECRET_NAME, "key": URL_KEY}}
        env.append({"name": pc.ENV_REDIS_URL, "valueFrom": ref})
    vector = vector_server(config)
    if vector is not None and uses_vectors(agent):
        env.append({"name": pc.ENV_VECTOR_URL, "value": vector.url})
    return env


def rag_vector_url(config: OperatorConfig) -> str | None:
    """The Chroma server the RAG sidecar reads: its own setting, else the memory server."""
    vector = vector_server(config)
    return config.rag_sidecar.vector_url or (vector.url if vector is not None else None)


def url_port(url: str) -> int:
    parts = urlsplit(url)
    default = {"redis": 6379, "rediss": 6379, "http": 80, "https": 443}.get(parts.scheme, 443)
    return parts.port or default


def memory_peers(agent: Agent, config: OperatorConfig) -> list[tuple[Peer | None, int]]:
    """The memory servers ``agent``'s pod reaches: (their pods, or None for any address; port).

    A RAG sidecar whose own ``vectorUrl`` is not the memory server's reaches it by port.
    """
    reached: list[tuple[Peer | None, int]] = []
    redis = redis_server(config)
    if redis is not None:
        reached.append((redis.peer, url_port(redis.url)))
    vector = vector_server(config)
    if vector is not None and uses_vectors(agent):
        reached.append((vector.peer, url_port(vector.url)))
    own = config.rag_sidecar.vector_url
    if agent.spec.rag is not None and own and (vector is None or own != vector.url):
        reached.append((None, url_port(own)))
    return reached


def new_password() -> str:
    return secrets.token_hex(24)


def secret_value(secret: JSON | None, key: str) -> str | None:
    """The text under ``key`` of a live Secret, if it holds one (not empty, valid base64)."""
    encoded = ((secret or {}).get("data") or {}).get(key)
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode() or None
    except (ValueError, UnicodeDecodeError):
        return None


def secret_password(live: JSON | None) -> str | None:
    """The password kept in a live memory Secret, if it holds one."""
    return secret_value(live, PASSWORD_KEY)


def render_secret(namespace: str, server_url: str, password: str) -> JSON:
    """The namespace's memory Secret: its Redis user, password and URL with both."""
    values = {
        URL_KEY: namespace_url(server_url, namespace, password),
        USERNAME_KEY: redis_username(namespace),
        PASSWORD_KEY: password,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": namespace,
            "labels": common_labels(COMPONENT, SECRET_NAME),
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }
    return stamp(secret)
