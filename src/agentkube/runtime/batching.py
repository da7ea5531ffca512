"""Group commit: many callers' writes to a remote store, sent together.

A :class:`GroupCommit` wraps a ``flush(items) -> results`` that writes a batch in one round
trip (a Redis ``MULTI`` of many commands, say). A caller awaits its own item's result. The
first caller's item is flushed at once — no added latency when the store is idle — and items
that arrive while a flush is in flight wait for it and go together in the next one, so under
load the number of round trips grows with the number of flushes, not of items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self, flush: Callable[[list[Item]], Awaitable[list[Result]]], *, max_batch: int = 512
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"a flush of {len(batch)} items gave {len(results)}")
            except Exception as e:  # every caller of this batch hears why
                _fail(batch, e)
                continue
            except BaseException as e:  # cancelled: the callers are told, then it propagates
                _fail([*batch, *self._waiting], e)
                self._waiting.clear()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def aclose(self) -> None:
        """Wait for what is being flushed."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


def _fail(callers: list[tuple[Any, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, future in callers:
        if not future.done():
            future.set_exception(error)
