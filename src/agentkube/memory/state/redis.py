"""State in Redis (redis-py asyncio), one namespace per store.

Keys (all under :func:`~agentkube.memory.tenancy.key_prefix`, which the namespace's ACL user is
limited to): ``session:<agent>:<conversation>`` a list of turns, ``task:<id>`` a JSON string,
``kv:<key>`` a string. Appending a turn is one ``MULTI``: ``RPUSH``, ``LTRIM`` to the newest
``max_turns``, ``PEXPIRE`` the TTL — retention is enforced by the server on write.

Durability is the server's: run Redis with ``appendonly yes`` (``deploy/memory`` does, with
``appendfsync everysec``: an acknowledged write survives a Redis crash, and at most the last
second is lost if the whole node dies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from agentkube.memory.errors import AccessDenied, InvalidName, MemoryFailure, StoreUnavailable
from agentkube.memory.state import Retention, TaskRecord, check_id
from agentkube.memory.tenancy import DEFAULT_NAMESPACE, key_prefix

T = TypeVar("T")


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else "***@"
    host = parts.hostname or ""
    netloc = user + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _as_bytes(value: bytes | str) -> bytes:
    # The client is made without decode_responses, so replies are bytes; typeshed allows str.
    return value if isinstance(value, bytes) else value.encode()


async def guarded(call: Callable[[], Awaitable[T]], *, kind: str, location: str, tenant: str) -> T:
    """``call()``, with redis-py's failures as memory errors naming ``location``."""
    try:
        return await call()
    except redis_errors.AuthenticationError as e:
        raise AccessDenied(f"{kind} at {location} refused the credentials ({e})") from e
    except redis_errors.NoPermissionError as e:
        raise AccessDenied(f"{kind} at {location} denied {tenant} ({e})") from e
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as e:
        raise StoreUnavailable(kind, location, str(e) or type(e).__name__) from e
    except redis_errors.RedisError as e:
        raise MemoryFailure(f"{kind} at {location}: {e}") from e


class RedisState:
    kind = "state store"

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        retention: Retention | None = None,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise InvalidName(
                f"Redis URL {redacted(url)!r} must look like redis://[USER:PASS@]HOST:PORT"
            )
        self._namespace = namespace
        self._prefix = key_prefix(namespace)
        self._retention = retention or Retention()
        self._location = redacted(url)
        self._redis: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def location(self) -> str:
        return self._location

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        return await guarded(
            call, kind=self.kind, location=self._location, tenant=f"namespace {self._namespace!r}"
        )

    def _session(self, agent: str, conversation: str) -> str:
        agent, conversation = check_id("agent", agent), check_id("conversation", conversation)
        return f"{self._prefix}session:{agent}:{conversation}"

    async def load_turns(self, agent: str, conversation: str) -> list[bytes]:
        key = self._session(agent, conversation)
        turns: list[Any] = await self._guarded(lambda: self._redis.lrange(key, 0, -1))
        return [_as_bytes(turn) for turn in turns]

    async def append_turn(self, agent: str, conversation: str, turn: bytes) -> None:
        key = self._session(agent, conversation)
        ttl_ms = max(1, int(self._retention.ttl_s * 1000))

        async def append() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, turn)
                pipe.ltrim(key, -self._retention.max_turns, -1)
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

        await self._guarded(append)

    async def delete_session(self, agent: str, conversation: str) -> None:
        key = self._session(agent, conversation)
        await self._guarded(lambda: self._redis.delete(key))

    async def put_task(self, record: TaskRecord, ttl_s: float | None = None) -> None:
        key = f"{self._prefix}task:{check_id('task id', record.id)}"
        body = record.model_dump_json()
        px = int(ttl_s * 1000) if ttl_s else None
        await self._guarded(lambda: self._redis.set(key, body, px=px))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        key = f"{self._prefix}task:{check_id('task id', task_id)}"
        body = await self._guarded(lambda: self._redis.get(key))
        return None if body is None else TaskRecord.model_validate_json(body)

    async def get(self, key: str) -> bytes | None:
        full = f"{self._prefix}kv:{check_id('key', key)}"
        value = await self._guarded(lambda: self._redis.get(full))
        return None if value is None else _as_bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        full = f"{self._prefix}kv:{check_id('key', key)}"
        px = int(ttl_s * 1000) if ttl_s else None
        await self._guarded(lambda: self._redis.set(full, value, px=px))

    async def delete(self, key: str) -> None:
        full = f"{self._prefix}kv:{check_id('key', key)}"
        await self._guarded(lambda: self._redis.delete(full))

    async def aclose(self) -> None:
        await self._redis.aclose()
