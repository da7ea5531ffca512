"""Fire-and-forget asyncio tasks that are never lost: kept referenced until done, awaited on close.

asyncio keeps only a weak reference to a task, so a task nobody holds can be garbage-collected
mid-flight. Every component that starts work it does not await at once (clean-ups after an
execution, a queued agent task, a retry) holds it in a :class:`BackgroundTasks`, which either
waits for the tasks to finish (clean-ups must complete) or cancels them (work to abandon).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

Work = Coroutine[Any, Any, Any]


class BackgroundTasks:
    """A set of running tasks owned by one component."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, work: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every task, including ones spawned meanwhile, has finished (errors swallowed:
        each task reports its own)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait until they are gone."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(work: Work | None) -> AsyncIterator[None]:
    """Run ``work`` (a loop that runs until cancelled) for the duration of the block, then cancel
    it and wait until it is gone; None runs nothing."""
    if work is None:
        yield
        return
    task = asyncio.get_running_loop().create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
