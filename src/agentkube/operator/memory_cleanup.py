"""A namespace's Redis user is removed once the namespace is gone.

The operator makes one ACL user per agent namespace (:mod:`agentkube.operator.memory_access`).
It cannot watch Namespaces, because the namespaced install has no cluster-scoped rights. What it
does see is each namespace's Agents and its memory Secret. When both are gone, so is the
namespace's user:

- at once, on the DELETED event of its last Agent or of its Secret (:meth:`OrphanedUsers.released`);
- and in a sweep every ``recheckSeconds``, the first one a period after the start. The sweep
  takes every ACL user the operator made (:func:`~agentkube.memory.tenancy.user_namespace`) in
  the namespaces it watches, and removes those whose namespace has neither an Agent nor the
  Secret in the cache. It catches namespaces deleted while the operator, or Redis, was down.

The cache only picks the candidates. Before a user goes, the API server is asked (a list of at
most one Agent, a read of the Secret), under the namespace's lock in ``NamespaceMemory`` so that
no ensure runs in between. So a cache that the watches have not filled yet (an operator just
restarted) never removes a live user, and neither does an event that raced a new Agent. (kopf
tells ``on.event`` handlers nothing about the end of a watch's initial list; only its indexes
wait for that, and the operator uses none: docs/architecture.md, "The engine".) A
Secret deleted by hand while Agents run is made again by their reconcile, with the same password,
and the user stays.

The namespace's keys stay, so a mistaken delete loses no data. A namespace made again under the
same name gets a new password, and sees those keys (docs/memory.md). A failure (Redis down, the
admin password refused, the API server unreachable) is one log line, and the namespace is tried
again at the next sweep. Nothing here raises into the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any, Protocol

from agentkube.background import running
from agentkube.memory.errors import MemoryFailure
from agentkube.memory.tenancy import redis_username
from agentkube.operator.cache import Cache
from agentkube.operator.errors import ReconcileError, RejectedByApi
from agentkube.operator.memory import SECRET_NAME
from agentkube.operator.memory_access import NamespaceMemory, NotReady
from agentkube.operator.naming import MANAGED_BY, MANAGED_BY_LABEL

JSON = dict[str, Any]
log = logging.getLogger(__name__)

FAILURES = (MemoryFailure, NotReady, ReconcileError)


class Presence(Protocol):
    """What this module asks the API server (:class:`~agentkube.operator.applying.Applier`)."""

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...

    async def any_in(self, kind: str, namespace: str) -> bool: ...


class OrphanedUsers:
    """Removes the Redis users of namespaces that have no Agent and no memory Secret left."""

    def __init__(
        self,
        memory: NamespaceMemory,
        cache: Cache,
        api: Presence,
        *,
        interval_s: float | None = None,  # None: the server's recheckSeconds
    ) -> None:
        self.memory = memory
        self.cache = cache
        self.api = api
        self.interval_s = interval_s or memory.server.recheck_seconds
        self.namespaces: frozenset[str] = frozenset()  # the watched ones; empty: all
        self._pending: set[str] = set()
        self._wake = asyncio.Event()

    def released(self, namespace: str) -> None:
        """An Agent or the memory Secret of ``namespace`` was deleted: check it soon."""
        if self._in_scope(namespace) and not self._cached(namespace, self._agent_namespaces()):
            self._pending.add(namespace)
            self._wake.set()

    async def release_pending(self) -> list[str]:
        """Check the namespaces :meth:`released` named; those whose user was removed."""
        pending, self._pending = sorted(self._pending), set()
        return await self._release_all(pending)

    async def sweep(self) -> list[str]:
        """Remove the users of unused namespaces in scope; the namespaces whose user went."""
        try:
            namespaces = await self.memory.users()
        except FAILURES as e:
            self._failed(None, e)
            return []
        with_agents = self._agent_namespaces()
        return await self._release_all(
            ns for ns in namespaces if self._in_scope(ns) and not self._cached(ns, with_agents)
        )

    async def run(self) -> None:
        """Check released namespaces at once, and sweep every ``interval_s``."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - loop.time()))
            self._wake.clear()
            try:
                await self.release_pending()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.interval_s
                    await self.sweep()
            except Exception as e:  # a bug here must not stop the operator; the sweep retries
                log.warning("removing unused Redis users failed: %s: %s", type(e).__name__, e)

    @contextlib.asynccontextmanager
    async def running(self, namespaces: Collection[str]) -> AsyncIterator[OrphanedUsers]:
        """:meth:`run` while the block runs, for ``namespaces`` (none: every namespace)."""
        self.namespaces = frozenset(namespaces)
        async with running(self.run()):
            yield self

    async def _release_all(self, namespaces: Iterable[str]) -> list[str]:
        removed = []
        for namespace in namespaces:
            try:
                if await self.memory.remove(namespace, functools.partial(self._in_use, namespace)):
                    removed.append(namespace)
            except RejectedByApi as e:  # this namespace only (say, no right to list there)
                self._failed(namespace, e)
            except FAILURES as e:  # Redis or the API server down: the same for the others
                self._failed(namespace, e)
                break  # the rest wait for the next sweep
        return removed

    async def _in_use(self, namespace: str) -> bool:
        """Whether the namespace still has an Agent or the operator's memory Secret, by the
        cache and then by the API server."""
        if self._cached(namespace, self._agent_namespaces()):
            return True
        if await self.api.any_in("Agent", namespace):
            return True
        secret = await self.api.read("Secret", namespace, SECRET_NAME)
        labels = (secret or {}).get("metadata", {}).get("labels") or {}
        return labels.get(MANAGED_BY_LABEL) == MANAGED_BY

    def _cached(self, namespace: str, with_agents: Collection[str]) -> bool:
        return (
            namespace in with_agents or self.cache.get("Secret", namespace, SECRET_NAME) is not None
        )

    def _agent_namespaces(self) -> set[str]:
        return {namespace for namespace, _ in self.cache.keys("Agent")}

    def _in_scope(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def _failed(self, namespace: str | None, error: Exception) -> None:
        what = f"Redis user {redis_username(namespace)}" if namespace else "unused Redis users"
        log.warning("%s not removed yet (%s); again in %.0fs", what, error, self.interval_s)


@contextlib.asynccontextmanager
async def cleaning(
    orphans: OrphanedUsers | None, namespaces: Collection[str]
) -> AsyncIterator[None]:
    """:meth:`OrphanedUsers.running` for the block, when there is shared memory."""
    if orphans is None:
        yield
        return
    async with orphans.running(namespaces):
        yield
