"""The operator's side of Redis tenancy: one admin connection that manages namespace users.

The operator connects as the server's admin (deploy/memory: the ``default`` user, its password
in a Secret) and gives each agent namespace its own ACL user
(:func:`~agentkube.memory.tenancy.ensure_redis_user`), and removes it once the namespace is gone
(:func:`~agentkube.memory.tenancy.delete_redis_user`). Agents connect with
:func:`~agentkube.memory.tenancy.namespace_url` — the server's URL with that user's
credentials — and reach only their namespace's keys. Failures are memory errors naming the
server (never the password).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from agentkube.memory.state.redis import guarded, redacted
from agentkube.memory.tenancy import delete_redis_user, ensure_redis_user, redis_user_namespaces


class RedisAdmin:
    """An admin connection to one Redis server (opened on first use, reconnecting as needed)."""

    kind = "Redis"

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.location = redacted(url)
        self._redis: aioredis.Redis = aioredis.from_url(
            url,
            username=username,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    async def ensure_namespace_user(self, namespace: str, password: str) -> str:
        """Create or reset ``namespace``'s ACL user with ``password``; its name."""
        return await guarded(
            lambda: ensure_redis_user(self._redis, namespace, password),
            kind=self.kind,
            location=self.location,
            tenant="the operator's admin user",
        )

    async def delete_namespace_user(self, namespace: str) -> bool:
        """Remove ``namespace``'s ACL user (not its keys); whether there was one."""
        return await guarded(
            lambda: delete_redis_user(self._redis, namespace),
            kind=self.kind,
            location=self.location,
            tenant="the operator's admin user",
        )

    async def namespace_users(self) -> list[str]:
        """The namespaces that have an ACL user made by the operator."""
        return await guarded(
            lambda: redis_user_namespaces(self._redis),
            kind=self.kind,
            location=self.location,
            tenant="the operator's admin user",
        )

    async def backlog(self, stream: str, group: str) -> int:
        """Entries of ``stream`` not yet acknowledged by ``group``: waiting (its lag) plus
        delivered and still running (its pending count); 0 when there is no such stream."""
        return await guarded(
            lambda: _backlog(self._redis, stream, group),
            kind=self.kind,
            location=self.location,
            tenant="the operator's admin user",
        )

    async def aclose(self) -> None:
        await self._redis.aclose()


async def _backlog(client: aioredis.Redis, stream: str, group: str) -> int:
    if not await client.exists(stream):
        return 0
    for info in await client.xinfo_groups(stream):
        name = info.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == group:
            lag = info.get("lag")
            if lag is None:  # not computable (entries deleted): every entry may be waiting
                lag = await client.xlen(stream)
            return int(lag) + int(info.get("pending") or 0)
    return int(await client.xlen(stream))
