"""Warm start: a few pre-started, single-use sandboxes waiting for code.

Each waiting sandbox is a complete, isolated one (own cgroup, namespaces and pid-1 helper with the
interpreter already loaded) that has not seen any code yet. :meth:`LocalWarmPool.take` hands one out
exactly once; the caller destroys it after its execution, and the pool starts a replacement in the
background. A failed start is not retried in a loop: the pool waits for the next ``take``, and the
caller falls back to a cold start, which reports the real error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from agentkube.background import BackgroundTasks
from agentkube.sandbox.local.spawning import SandboxProcess

log = logging.getLogger(__name__)


async def _destroy_quietly(sandbox: SandboxProcess) -> None:
    try:
        await sandbox.destroy()
    except Exception:
        log.exception("could not clean up warm sandbox %s", sandbox.cgroup.name)


class LocalWarmPool:
    """Keeps ``size`` started sandboxes ready."""

    def __init__(self, size: int, start: Callable[[], Awaitable[SandboxProcess]]) -> None:
        self.size = size
        self._start = start
        self._ready: deque[SandboxProcess] = deque()
        self._starting: set[asyncio.Task[None]] = set()
        self._cleanups = BackgroundTasks()
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def fill(self) -> None:
        """Start as many sandboxes as the pool is short of."""
        while not self._closed and len(self._ready) + len(self._starting) < self.size:
            self._starting.add(asyncio.create_task(self._start_one()))

    async def _start_one(self) -> None:
        try:
            await self._start_and_keep()
        finally:
            # Before waking waiters, so that wait_full sees an accurate count.
            task = asyncio.current_task()
            if task is not None:
                self._starting.discard(task)
            self._changed.set()

    async def _start_and_keep(self) -> None:
        try:
            sandbox = await self._start()
        except Exception as e:
            log.warning("warm sandbox failed to start: %s", e)
            return
        try:
            ready = await sandbox.ready()
        except asyncio.CancelledError:
            await _destroy_quietly(sandbox)
            raise
        if ready and not self._closed:
            self._ready.append(sandbox)
        else:
            await _destroy_quietly(sandbox)

    async def wait_full(self) -> None:
        """Fill the pool and wait until every start has finished (successfully or not)."""
        self.fill()
        while self._starting:
            self._changed.clear()
            await self._changed.wait()

    def take(self, scratch_bytes: int) -> SandboxProcess | None:
        """A ready sandbox with this scratch size, never handed out before.

        The pool does not refill here: the caller calls :meth:`fill` once its execution is over,
        so that starting the replacement does not compete with the execution for the CPU.
        """
        for _ in range(len(self._ready)):
            sandbox = self._ready.popleft()
            if sandbox.alive() and sandbox.scratch_bytes == scratch_bytes:
                return sandbox
            if sandbox.alive():
                self._ready.append(sandbox)
            else:
                self._destroy_later(sandbox)
        return None

    def _destroy_later(self, sandbox: SandboxProcess) -> None:
        self._cleanups.spawn(_destroy_quietly(sandbox))

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._starting, return_exceptions=True)
        while self._ready:
            await self._ready.popleft().destroy()
        await self._cleanups.wait()
