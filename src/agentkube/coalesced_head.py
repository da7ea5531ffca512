"""A response's head leaves with its first body chunk: one transport write where uvicorn does two.

uvicorn's HTTP/1.1 protocols write the status line and headers the moment the app sends
``http.response.start`` and each body chunk the moment it is sent, so a whole small response is
two writes: two system calls, two segments, two wake-ups of the client. :class:`HeadWithBody` is
the transport one request's response cycle writes to instead of the connection's own: it holds
the cycle's first write (the head) until its next one (the first body chunk) and sends the two
together, or sends the head alone at the end of the event-loop step in which it was written, if
the app awaits something before its first chunk (a stream waiting for its upstream). A streamed
head is late by one loop step at most; every body chunk still leaves the moment it is sent, so
a held write never outlives the response it belongs to. HTTP framing stays uvicorn's.

:class:`CoalescedHead` installs it on every new cycle of a uvicorn protocol it is mixed into
(:mod:`agentkube.bounded_headers` does, for both of uvicorn's implementations).
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadWithBody(asyncio.Transport):
    """The connection's ``transport`` as one response cycle writes to it (write, close,
    is_closing: all a uvicorn cycle uses), with the cycle's first write held as above."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport, self._loop = transport, loop
        self._first = True
        self._held: bytes | None = None
        self._release: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._first:
            self._first = False
            self._held = bytes(data)
            self._release = self._loop.call_soon(self.flush)
        elif self._held is not None:
            head, self._held = self._held, None
            assert self._release is not None
            self._release.cancel()
            self._transport.writelines((head, data))
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send the held head now, if one is held (before the connection writes on its own)."""
        if self._held is None:
            return
        head, self._held = self._held, None
        assert self._release is not None
        self._release.cancel()
        if not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class CoalescedHead:
    """Mixed into a uvicorn protocol (which has ``loop``, ``transport`` and ``cycle``): each
    new response cycle writes through a :class:`HeadWithBody` of its own."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def _coalesce_new_cycle(self, previous: object) -> None:
        """Called right after the protocol parsed a request: ``previous`` is the cycle before.
        The new cycle's task has not run yet (it was only created), so nothing was written."""
        cycle = self.cycle
        if cycle is not None and cycle is not previous:
            cycle.transport = HeadWithBody(self.transport, self.loop)

    # The protocol writes on, or closes, the connection itself here: a head still held (a HEAD
    # response has no body write to carry it) goes first.

    def send_400_response(self, msg: str) -> None:
        self._flush_held()
        super().send_400_response(msg)  # type: ignore[misc]  # the uvicorn protocol's, by the MRO

    def shutdown(self) -> None:
        self._flush_held()
        super().shutdown()  # type: ignore[misc]

    def _flush_held(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, HeadWithBody):
            cycle.transport.flush()
