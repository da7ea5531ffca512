"""Slow-loris: a client that sends its request headers a byte at a time is cut off at the header
deadline, on a real uvicorn server; a prompt client on the same kind of connection is served."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from fastapi import FastAPI

from agentkube.bounded_headers import Implementation, bounded_headers
from tests.standins.serving import raw_request, serve

DEADLINE_S = 0.6
# Both of uvicorn's HTTP/1.1 implementations carry the deadline; "auto" must pick httptools.
IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["httptools", "h11"])


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(DEADLINE_S * 1.5)  # longer than the headers may take
        return {"slow": "yes"}

    return app


def _whole_response(sock: socket.socket) -> int:
    """Read one whole response (headers and its Content-Length body); its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(
        int(v) for k, _, v in (h.partition(": ") for h in lines[1:]) if k == "content-length"
    )
    while len(body) < length:
        body += sock.recv(4096)
    return int(lines[0].split(" ", 2)[1])


def _closed_after(sock: socket.socket, drip: bytes, limit_s: float) -> float:
    """Send drip one byte every 0.1 s until the server closes; the seconds that took."""
    started = time.monotonic()
    sock.settimeout(0.1)
    for byte in drip * 100:
        if time.monotonic() - started > limit_s:
            break
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    raise AssertionError(f"the server kept the connection open for {limit_s} s")


@IMPLEMENTATIONS
def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(
    implementation: Implementation,
) -> None:
    with serve(_app(), http=bounded_headers(DEADLINE_S, implementation)) as url:
        sock = raw_request(url, b"GET /ping HTTP/1.1\r\nhost: x\r\n")
        took = _closed_after(sock, b"x-slow: ", limit_s=10)
        sock.close()
    # Bytes kept arriving: only the deadline, not idleness, can have closed it.
    assert DEADLINE_S - 0.1 < took < DEADLINE_S + 2


@IMPLEMENTATIONS
def test_a_prompt_request_is_served_and_the_next_one_on_the_connection_is_bounded_too(
    implementation: Implementation,
) -> None:
    with serve(_app(), http=bounded_headers(DEADLINE_S, implementation)) as url:
        sock = raw_request(url, b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        # Answered after the deadline: complete headers disarmed it, the handler may take long.
        assert _whole_response(sock) == 200
        sock.sendall(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _whole_response(sock) == 200
        took = _closed_after(sock, b"x-slow: ", limit_s=10)
        sock.close()
    assert took < DEADLINE_S + 2


@IMPLEMENTATIONS
def test_pipelined_requests_are_all_answered_though_the_handler_outlasts_the_deadline(
    implementation: Implementation,
) -> None:
    with serve(_app(), http=bounded_headers(DEADLINE_S, implementation)) as url:
        # The second request's headers arrive complete while the first is being handled.
        sock = raw_request(url, b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n" * 2)
        assert _whole_response(sock) == 200
        assert _whole_response(sock) == 200
        sock.close()


def test_auto_picks_httptools_where_it_is_installed() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(bounded_headers(DEADLINE_S), HttpToolsProtocol)
