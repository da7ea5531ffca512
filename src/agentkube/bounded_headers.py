"""HTTP/1.1 protocols for uvicorn that bound how long a client may take to send its headers.

uvicorn times out an idle keep-alive connection, but not one that is still sending a request's
headers: a client that opens connections and sends a header byte now and then (slow-loris)
holds each one, and its buffer, for as long as it likes. These protocols, uvicorn's own ones
with a deadline, close a connection whose request line and headers are not complete
``header_timeout_s`` after it opened, or after the previous response on it ended. A byte
arriving does not reset the deadline; only a complete set of headers does. Bodies are bounded
separately (:mod:`agentkube.bounded_bodies`). Each response's head also leaves with its first
body chunk, in one write (:mod:`agentkube.coalesced_head`).

Both of uvicorn's implementations are covered: httptools (its C parser, what ``http="auto"``
picks and the default here, several times cheaper per request) and h11 (pure Python, the
fallback where httptools is not installed)::

    uvicorn.run(app, http=bounded_headers(10.0), ...)
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any, Literal

from uvicorn.protocols.http.h11_impl import H11Protocol

from agentkube.coalesced_head import CoalescedHead

DEFAULT_HEADER_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)

Implementation = Literal["auto", "httptools", "h11"]


class _HeaderDeadline:
    """The deadline itself; mixed into a uvicorn protocol (which has ``loop``, ``transport``,
    ``client`` and ``cycle``)."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]  # the uvicorn protocol's, by the MRO

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info(
                "closing a connection from %s: no complete request headers in %.0f s",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()


class BoundedHeadersProtocol(_HeaderDeadline, CoalescedHead, H11Protocol):
    """uvicorn's h11 protocol, with a deadline on each request's headers and each response's
    head sent with its first body chunk."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_after: object = None  # the cycle whose successor's headers are awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_after_cycle()

    def handle_events(self) -> None:
        previous = self.cycle
        super().handle_events()
        self._coalesce_new_cycle(previous)
        if self._deadline is not None and self.cycle is not self._waiting_after:
            self._disarm()  # a new request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()  # parses a pipelined request, if one is waiting
        # The next request on this connection gets the same deadline, unless its headers are
        # complete already (a new cycle started).
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._arm_after_cycle()

    def _arm_after_cycle(self) -> None:
        self._waiting_after = self.cycle
        self._arm()


def _httptools_protocol() -> type[Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(_HeaderDeadline, CoalescedHead, HttpToolsProtocol):
        """uvicorn's httptools protocol, with a deadline on each request's headers and each
        response's head sent with its first body chunk."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()  # parsed by now; a pipelined request's as well
            previous = self.cycle
            super().on_headers_complete()
            self._coalesce_new_cycle(previous)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Armed only when no request is waiting: a pipelined one parsed during this
            # response has its headers complete already.
            if not self.transport.is_closing() and self.cycle.response_complete:
                self._arm()

    return BoundedHttpToolsProtocol


def bounded_headers(
    timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, implementation: Implementation = "auto"
) -> type[Any]:
    """The protocol class for uvicorn's ``http=``, with headers due within ``timeout_s``:
    httptools when it is installed (``auto``), else h11."""
    if implementation == "auto":
        has_httptools = importlib.util.find_spec("httptools") is not None
        implementation = "httptools" if has_httptools else "h11"
    base = _httptools_protocol() if implementation == "httptools" else BoundedHeadersProtocol
    return type("BoundedHeaders", (base,), {"header_timeout_s": timeout_s})
