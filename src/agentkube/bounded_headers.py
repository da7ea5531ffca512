"""An HTTP/1.1 protocol for uvicorn that bounds how long a client may take to send its headers.

uvicorn times out an idle keep-alive connection, but not one that is still sending a request's
headers: a client that opens connections and sends a header byte now and then (slow-loris)
holds each one, and its buffer, for as long as it likes. This protocol, uvicorn's own h11 one
with a deadline, closes a connection whose request line and headers are not complete
``header_timeout_s`` after it opened, or after the previous response on it ended. A byte
arriving does not reset the deadline; only a complete set of headers does. Bodies are bounded
separately (:mod:`agentkube.bounded_bodies`).

    uvicorn.run(app, http=bounded_headers(10.0), ...)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


class BoundedHeadersProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on each request's headers."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None  # the cycle whose successor's headers are awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._waiting_after:
            self._disarm()  # a new request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same deadline

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle
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


def bounded_headers(timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> type[BoundedHeadersProtocol]:
    """The protocol class for uvicorn's ``http=``, with headers due within ``timeout_s``."""
    return type("BoundedHeaders", (BoundedHeadersProtocol,), {"header_timeout_s": timeout_s})
