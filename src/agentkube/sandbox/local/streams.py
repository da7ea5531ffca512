"""Non-blocking pipe I/O on the event loop with a hard bound on what the runner keeps.

A sandbox that floods its output must not be able to grow the runner's memory: a
:class:`CappedReader` stores at most ``cap`` bytes, discards the rest while it waits for the
sandbox to be killed, and reports the overflow once so the caller can kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

CHUNK = 64 * 1024


class CappedReader:
    """Reads one pipe to EOF, keeping the first ``cap`` bytes."""

    def __init__(self, fd: int, cap: int, on_overflow: Callable[[], None] | None = None) -> None:
        self._fd = fd
        self.cap = cap
        self.on_overflow = on_overflow
        self.on_data: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.overflowed = False
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._first_byte: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        self._read_once()

    def read_available(self) -> None:
        """Take in everything the pipe holds right now, without waiting for more."""
        for _ in range(self.cap // CHUNK + 2):
            if self.closed.done() or not self._read_once():
                return

    def _read_once(self) -> bool:
        """Read one chunk; False when there was nothing to read (or EOF)."""
        try:
            chunk = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return False
        self._consume(chunk)
        return True

    def _consume(self, chunk: bytes) -> None:
        if not self._first_byte.done():
            self._first_byte.set_result(None)
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            if not self.overflowed:
                self.overflowed = True
                if self.on_overflow is not None:
                    self.on_overflow()
            return
        self.data += chunk
        if self.on_data is not None:
            self.on_data()

    async def first_byte(self) -> bool:
        """Wait for the first byte; False if the pipe closed without one."""
        await asyncio.wait({self._first_byte, self.closed}, return_when=asyncio.FIRST_COMPLETED)
        return self._first_byte.done()

    def close(self) -> None:
        if self.closed.done():
            return
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self.closed.set_result(None)
        if not self._first_byte.done():
            self._first_byte.cancel()

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe without blocking the loop (the caller closes it).

    A sandbox that never reads (it was killed, or it exited) must not hang the runner: a broken
    pipe ends the write quietly, and the caller bounds the whole execution with its timeout.
    """
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view[:CHUNK]) :]
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, _resolve, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
    except (BrokenPipeError, ConnectionResetError):
        pass
