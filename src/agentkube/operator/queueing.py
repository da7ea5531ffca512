"""The reconcile queue: one run at a time per object, coalesced, bounded, retried with back-off.

Reconciles are level-triggered: any event about an object or one of its children asks for a
reconcile of the object, which then looks at the latest cached state. So a burst of events needs
only one more run: a request arriving while another one already waits is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agentkube.background import BackgroundTasks

log = logging.getLogger(__name__)

Ref = tuple[str, str, str]  # kind, namespace, name
Work = Callable[[Ref], Awaitable[bool]]  # returns whether to retry later


class ReconcileQueue:
    def __init__(
        self, work: Work, *, concurrency: int, retry_seconds: float, max_retry_seconds: float
    ) -> None:
        self._work = work
        self._slots = asyncio.Semaphore(concurrency)
        self._locks: dict[Ref, asyncio.Lock] = {}
        self._waiting: set[Ref] = set()
        self._failures: dict[Ref, int] = {}
        self._timers: dict[Ref, asyncio.TimerHandle] = {}
        self._tasks = BackgroundTasks()
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self.completed = 0
        self.retried = 0  # reconciles that failed (crashed or asked again), for the metrics

    async def run(self, ref: Ref) -> None:
        """Reconcile ``ref`` now, unless a run that will see the same state is already waiting."""
        if ref in self._waiting:
            return
        self._waiting.add(ref)
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            self._waiting.discard(ref)
            async with self._slots:
                try:
                    retry = await self._work(ref)
                except Exception:
                    log.exception("reconcile of %s %s/%s crashed", *ref)
                    retry = True
                self.completed += 1
        log.info("reconciled %s %s/%s%s", *ref, " (will retry)" if retry else "")
        if retry:
            self._retry_later(ref)
        else:
            self._failures.pop(ref, None)

    def submit(self, ref: Ref) -> None:
        """Run in the background (from a timer or a resync)."""
        self._tasks.spawn(self.run(ref))

    @property
    def depth(self) -> int:
        """Objects waiting for a reconcile: queued now, or on a retry timer."""
        return len(self._waiting) + len(self._timers)

    def _retry_later(self, ref: Ref) -> None:
        self.retried += 1
        if ref in self._timers:
            # A retry is already due: runs that events asked for meanwhile (several at once,
            # right after a start) failing too do not push it, nor the back-off, further out.
            return
        failures = self._failures.get(ref, 0)
        self._failures[ref] = failures + 1
        delay = min(self._retry * 2**failures, self._max_retry)
        log.info("retrying %s %s/%s in %.1fs", *ref, delay)
        self._timers[ref] = asyncio.get_running_loop().call_later(delay, self._fire, ref)

    def _fire(self, ref: Ref) -> None:
        self._timers.pop(ref, None)
        self.submit(ref)

    def forget(self, ref: Ref) -> None:
        """The object is gone: drop its retry timer and bookkeeping."""
        timer = self._timers.pop(ref, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(ref, None)
        lock = self._locks.get(ref)
        if lock is not None and not lock.locked() and ref not in self._waiting:
            del self._locks[ref]

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._tasks.cancel()
