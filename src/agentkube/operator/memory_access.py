"""Each agent namespace's access to the shared Redis: its Secret and its ACL user, ensured.

Per namespace, once (then again every ``recheckSeconds``, or when its Secret changes):

1. the Secret ``agentkube-memory`` — read from the watch-fed cache (else one GET), created with a
   generated password when missing, re-applied only when it differs from what it should hold
   (the server's URL changed, a key was edited away). An existing password is always kept — a
   deleted Secret comes back with the password the operator last set — so running pods keep
   working; an unchanged namespace costs no request at all;
2. the namespace's Redis ACL user, set with that password through the operator's admin
   connection (:class:`~agentkube.memory.redis_admin.RedisAdmin`; its password from the Secret
   named in the configuration).

The outcome is the Agent's ``MemoryReady`` condition: a Redis that is down, refuses the admin
password, or an admin Secret that is missing says so in one line naming the server, and the
reconcile is retried with back-off; the rest of the Agent is still applied. A per-namespace lock
keeps concurrent reconciles of one namespace from generating two passwords, and a removal of the
namespace's user (:mod:`agentkube.operator.memory_cleanup`, once the namespace is gone) from
racing its ensure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agentkube.memory.errors import AccessDenied, MemoryFailure, StoreUnavailable
from agentkube.memory.redis_admin import RedisAdmin
from agentkube.memory.tenancy import redis_username
from agentkube.operator.cache import Cache
from agentkube.operator.config import RedisServer
from agentkube.operator.drift import drifted
from agentkube.operator.errors import ReconcileError
from agentkube.operator.memory import (
    SECRET_NAME,
    new_password,
    render_secret,
    secret_password,
    secret_value,
)
from agentkube.operator.naming import MANAGED_BY, MANAGED_BY_LABEL
from agentkube.operator.status import Check

JSON = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)

CONDITION = "MemoryReady"


class SecretApi(Protocol):
    """What this module needs of the API server (:class:`~agentkube.operator.applying.Applier`)."""

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...

    async def apply(self, obj: JSON) -> JSON: ...


class Admin(Protocol):
    location: str

    async def ensure_namespace_user(self, namespace: str, password: str) -> str: ...

    async def delete_namespace_user(self, namespace: str) -> bool: ...

    async def namespace_users(self) -> list[str]: ...

    async def backlog(self, stream: str, group: str) -> int: ...

    async def unread(
        self, streams: Sequence[str], group: str, count: int
    ) -> dict[str, list[dict[str, str]]]: ...

    async def aclose(self) -> None: ...


AdminFactory = Callable[[RedisServer, str | None], Admin]


def redis_admin(server: RedisServer, password: str | None) -> Admin:
    return RedisAdmin(server.url, username=server.admin_username, password=password)


class NotReady(Exception):
    """A namespace's memory cannot be ensured yet; ``reason`` and the message are the
    condition's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Ensured:
    password: str
    at: float


class NamespaceMemory:
    def __init__(
        self,
        server: RedisServer,
        *,
        cache: Cache,
        api: SecretApi,
        admin_factory: AdminFactory = redis_admin,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.cache = cache
        self.api = api
        self._admin_factory = admin_factory
        self._clock = clock
        self._admin: tuple[str | None, Admin] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._ensured: dict[str, _Ensured] = {}

    async def ensure(self, namespace: str) -> Check:
        """The namespace's Secret and ACL user, as the ``MemoryReady`` condition."""
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            try:
                password = await self._secret(namespace)
                await self._user(namespace, password)
            except NotReady as e:
                log.warning("memory of namespace %s: %s", namespace, e)
                return Check(type=CONDITION, ok=False, reason=e.reason, message=str(e))
        return Check(
            type=CONDITION,
            ok=True,
            reason="NamespaceUserReady",
            message=f"Redis user {redis_username(namespace)} at {self.server.url}",
        )

    async def backlog(self, stream: str, group: str) -> int:
        """Tasks of ``stream`` not finished (:meth:`RedisAdmin.backlog`), over the admin
        connection :meth:`ensure` opened (no extra Secret read); raises a memory error."""
        return await (await self._open()).backlog(stream, group)

    async def unread(
        self, streams: Sequence[str], group: str, count: int
    ) -> dict[str, list[dict[str, str]]]:
        """Entries of ``streams`` that ``group`` has not read (:meth:`RedisAdmin.unread`; the
        agents' incidents), over the same admin connection; raises a memory error."""
        return await (await self._open()).unread(streams, group, count)

    async def users(self) -> list[str]:
        """The namespaces that have an ACL user the operator made; raises a memory error or
        :class:`NotReady` (the admin Secret)."""
        return await self._as_admin(lambda admin: admin.namespace_users())

    async def remove(self, namespace: str, in_use: Callable[[], Awaitable[bool]]) -> bool:
        """Remove the namespace's ACL user (not its keys) unless ``in_use()`` — asked under the
        namespace's lock, so no ensure runs in between — and forget its password, so a namespace
        made again later gets a new one; whether a user was removed. Raises a memory error or
        :class:`NotReady`; ``in_use``'s own errors pass through."""
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            if await in_use():
                return False
            removed = await self._as_admin(lambda admin: admin.delete_namespace_user(namespace))
            self.forget(namespace)
        if removed:
            log.info("Redis user %s removed at %s", redis_username(namespace), self.server.url)
        return removed

    def forget(self, namespace: str) -> None:
        """Set the namespace's ACL user again at its next ensure (its Secret was rewritten)."""
        self._ensured.pop(namespace, None)

    async def aclose(self) -> None:
        if self._admin is not None:
            await self._admin[1].aclose()
            self._admin = None

    async def _secret(self, namespace: str) -> str:
        """The namespace's password, its Secret created or repaired when needed."""
        live = self.cache.get("Secret", namespace, SECRET_NAME)
        try:
            if live is None:  # not seen by the watch yet: never generate over an existing one
                live = await self.api.read("Secret", namespace, SECRET_NAME)
                if live is not None:
                    self.cache.put(live, "Secret")
            if live is not None and _labels(live).get(MANAGED_BY_LABEL) != MANAGED_BY:
                raise NotReady(
                    "SecretNotManaged",
                    f"Secret {namespace}/{SECRET_NAME} exists and is not managed by agentkube; "
                    "delete or rename it so the operator can keep the namespace's memory "
                    "credentials there",
                )
            # A deleted Secret comes back with the password running pods still use.
            ensured = self._ensured.get(namespace)
            kept = ensured.password if ensured is not None else None
            password = secret_password(live) or kept or new_password()
            desired = render_secret(namespace, self.server.url, password)
            if drifted(live, desired):
                self.cache.put(await self.api.apply(desired), "Secret")
                self.forget(namespace)
        except ReconcileError as e:
            raise NotReady("SecretFailed", str(e)) from e
        return password

    async def _user(self, namespace: str, password: str) -> None:
        ensured = self._ensured.get(namespace)
        now = self._clock()
        fresh = ensured is not None and now - ensured.at < self.server.recheck_seconds
        if fresh and ensured is not None and ensured.password == password:
            return
        admin = await self._connection()
        try:
            await admin.ensure_namespace_user(namespace, password)
        except StoreUnavailable as e:
            raise NotReady("RedisUnavailable", str(e)) from e
        except AccessDenied as e:
            self._admin = None  # the admin password may have changed: read it again next time
            await admin.aclose()
            raise NotReady("RedisAccessDenied", f"{e}; check {self._admin_source()}") from e
        except MemoryFailure as e:
            raise NotReady("RedisFailed", str(e)) from e
        self._ensured[namespace] = _Ensured(password=password, at=now)
        log.info("Redis user %s ensured at %s", redis_username(namespace), admin.location)

    async def _as_admin(self, call: Callable[[Admin], Awaitable[T]]) -> T:
        admin = await self._connection()
        try:
            return await call(admin)
        except AccessDenied:
            self._admin = None  # the admin password may have changed: read it again next time
            await admin.aclose()
            raise

    async def _open(self) -> Admin:
        """The admin connection already open, else a new one (the admin Secret read once)."""
        return self._admin[1] if self._admin is not None else await self._connection()

    async def _connection(self) -> Admin:
        password = await self._admin_password()
        if self._admin is not None and self._admin[0] == password:
            return self._admin[1]
        if self._admin is not None:
            await self._admin[1].aclose()
        admin = self._admin_factory(self.server, password)
        self._admin = (password, admin)
        return admin

    async def _admin_password(self) -> str | None:
        ref = self.server.admin_password_secret
        if ref is None:
            return None
        try:
            secret = await self.api.read("Secret", ref.namespace, ref.name)
        except ReconcileError as e:
            raise NotReady("RedisAdminSecretUnreadable", str(e)) from e
        value = secret_value(secret, ref.key)
        if value is None:
            raise NotReady(
                "RedisAdminSecretMissing",
                f"no key {ref.key!r} in Secret {ref.namespace}/{ref.name}: create it with the "
                f"Redis admin password of {self.server.url} (docs/memory.md)",
            )
        return value

    def _admin_source(self) -> str:
        ref = self.server.admin_password_secret
        if ref is None:
            return (
                f"that {self.server.url} needs no password, or set memory.redis.adminPasswordSecret"
            )
        return f"the password in Secret {ref.namespace}/{ref.name} (key {ref.key})"


def _labels(obj: JSON) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})
