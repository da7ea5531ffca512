"""An httpcore network backend on plain asyncio streams, for the proxy's upstream pool.

httpcore's default async backend goes through anyio: every read and write opens a cancel scope
(``fail_after``, even with no timeout) and a write is one ``send`` system call. A proxy does two
writes per request (head, then body) and two reads, so that overhead was a fifth of what a
pass-through request cost (docs/benchmarks.md). This backend uses ``asyncio.open_connection``'s
streams (uvloop's, where uvicorn runs on uvloop), sets a timeout only when one is given, and
holds writes until the next read, so a request's head and body leave in one segment (a writer
that passes :data:`FLUSH_BYTES` unread is flushed and drained at once). HTTP parsing stays
httpcore's (h11).

"Is readable" — httpcore's test of whether an idle keep-alive connection was closed by the
server — is answered from the stream's own state (end of stream seen, or the transport gone),
without a system call.
"""

# ruff: noqa: ASYNC109 - the `timeout` parameters are httpcore's network-backend interface
from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore

FLUSH_BYTES = 64 * 1024

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


@contextmanager
def _mapped(timeout_error: type[Exception], error: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as e:
        raise timeout_error(str(e) or "timed out") from e
    except (OSError, ConnectionError, EOFError) as e:
        raise error(str(e) or type(e).__name__) from e


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            self._flush()
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            if self._writer.transport.is_closing():
                raise ConnectionResetError("the connection is closed")
            self._pending.append(buffer)
            self._pending_bytes += len(buffer)
            if self._pending_bytes >= FLUSH_BYTES:
                self._flush()
                async with asyncio.timeout(timeout):
                    await self._writer.drain()

    def _flush(self) -> None:
        if self._pending:
            pending = self._pending
            self._pending, self._pending_bytes = [], 0
            self._writer.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def aclose(self) -> None:
        self._pending, self._pending_bytes = [], 0
        self._writer.close()
        with contextlib.suppress(OSError):  # a connection that broke: nothing left to close
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            self._flush()
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._reader.at_eof() or self._writer.transport.is_closing()
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
