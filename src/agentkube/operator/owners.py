"""Each owner's reconcile loop, as a kopf daemon: woken by its own and its children's events.

kopf runs one daemon per Agent, Model and MCPServer: the owner's reconciles are serialized
there, and a burst of events while one runs asks for exactly one more (a wake-up is a flag).
The loop also reconciles every ``resync_seconds`` as a safety net. A reconcile that should be
retried raises :class:`kopf.TemporaryError` with the back-off as its delay: kopf sleeps in
memory and calls the daemon again, which starts with a reconcile. Nothing of this is written
to the object; kopf's one write is its finalizer (a daemon is stopped before its object goes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import kopf

log = logging.getLogger(__name__)

Ref = tuple[str, str, str]  # kind, namespace, name
Work = Callable[[Ref], Awaitable[bool]]  # returns whether to retry later


class Stopped(Protocol):
    """kopf's ``stopped`` kwarg of a daemon: true, and awaitable, once it is to exit."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...


class Owners:
    """The wake-up flag of every running owner daemon, and the loop they run."""

    def __init__(
        self,
        work: Work,
        *,
        concurrency: int,
        resync_seconds: float,
        retry_seconds: float,
        max_retry_seconds: float,
    ) -> None:
        self._work = work
        self._slots = asyncio.Semaphore(concurrency)  # the API server's load, not kopf's
        self._resync = resync_seconds
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._flags: dict[Ref, asyncio.Event] = {}
        self._failures: dict[Ref, int] = {}
        self.completed = 0

    def wake(self, ref: Ref) -> None:
        """Ask ``ref``'s daemon for one more reconcile (nothing if it has none yet: its first
        pass is a reconcile anyway)."""
        flag = self._flags.get(ref)
        if flag is not None:
            flag.set()

    def forget(self, ref: Ref) -> None:
        self._flags.pop(ref, None)
        self._failures.pop(ref, None)

    async def run(self, ref: Ref, stopped: Stopped) -> None:
        """The daemon's body: reconcile now, then whenever woken or every resync interval, until
        kopf says stop (the object is being deleted, or the operator exits)."""
        flag = self._flags.setdefault(ref, asyncio.Event())
        flag.set()  # first pass, and after a retry's delay
        while not stopped:
            await _first(flag.wait(), stopped.wait(), within=self._resync)
            if stopped:
                return
            async with self._slots:
                flag.clear()
                try:
                    retry = await self._work(ref)
                except Exception:
                    log.exception("reconcile of %s %s/%s crashed", *ref)
                    retry = True
            self.completed += 1
            log.info("reconciled %s %s/%s%s", *ref, " (will retry)" if retry else "")
            if retry:
                failures = self._failures.get(ref, 0)
                self._failures[ref] = failures + 1
                delay = min(self._retry * 2**failures, self._max_retry)
                raise kopf.TemporaryError(f"retrying in {delay:.1f}s", delay=delay)
            self._failures.pop(ref, None)


async def _first(*waits: Awaitable[object], within: float) -> None:
    """Wait until one of ``waits`` is done, or ``within`` seconds passed."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
