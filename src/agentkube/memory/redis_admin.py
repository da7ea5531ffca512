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

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agentkube.memory.state.redis import guarded, redacted
from agentkube.memory.tenancy import delete_redis_user, ensure_redis_user, redis_user_namespaces

T = TypeVar("T")


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
        return await self._guarded(lambda: ensure_redis_user(self._redis, namespace, password))

    async def delete_namespace_user(self, namespace: str) -> bool:
        """Remove ``namespace``'s ACL user (not its keys); whether there was one."""
        return await self._guarded(lambda: delete_redis_user(self._redis, namespace))

    async def namespace_users(self) -> list[str]:
        """The namespaces that have an ACL user made by the operator."""
        return await self._guarded(lambda: redis_user_namespaces(self._redis))

    async def backlog(self, stream: str, group: str) -> int:
        """Entries of ``stream`` not yet acknowledged by ``group``: waiting (its lag) plus
        delivered and still running (its pending count); 0 when there is no such stream."""
        return await self._guarded(lambda: _backlog(self._redis, stream, group))

    async def unread(
        self, streams: Sequence[str], group: str, count: int
    ) -> dict[str, list[dict[str, str]]]:
        """Up to ``count`` entries of each stream that ``group`` has not read yet, oldest first,
        by stream (streams with none left out); reading them marks them read."""
        return await self._guarded(lambda: _unread(self._redis, streams, group, count))

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` with Redis's failures as memory errors naming this server."""
        return await guarded(
            call, kind=self.kind, location=self.location, tenant="the operator's admin user"
        )


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


# Creating the group fails harmlessly when it exists, or while the stream does not (the group
# is made, from the stream's first entry, on the first read after it appears).
_NO_GROUP_YET = ("BUSYGROUP", "requires the key to exist", "NOGROUP")


async def _unread(
    client: aioredis.Redis, streams: Sequence[str], group: str, count: int
) -> dict[str, list[dict[str, str]]]:
    """The group is the reader's cursor, kept by Redis (it survives the reader's restarts);
    ``NOACK``: an entry read is done with, nothing waits to be acknowledged."""
    async with client.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xgroup_create(stream, group, id="0")
            pipe.xreadgroup(group, group, {stream: ">"}, count=count, noack=True)
        replies = await pipe.execute(raise_on_error=False)
    found: dict[str, list[dict[str, str]]] = {}
    for stream, created, read in zip(streams, replies[::2], replies[1::2], strict=True):
        for reply in (created, read):
            if isinstance(reply, ResponseError) and not any(m in str(reply) for m in _NO_GROUP_YET):
                raise reply
        if isinstance(read, Exception) or not read:
            continue
        entries = [_decoded(fields) for _stream, batch in read for _id, fields in batch]
        if entries:
            found[stream] = entries
    return found


def _decoded(fields: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _text(value: bytes | str) -> str:
    # Written by an agent: whatever it wrote must not break the reader.
    return value.decode(errors="replace") if isinstance(value, bytes) else value
