"""A response's head leaves with its first body chunk (one write), in both of uvicorn's
protocols as bounded_headers() builds them; a streamed head still leaves when the app pauses,
and every chunk leaves as it is sent.

Writes are seen on a recording transport (a socket cannot show where one write ended), the
streamed head and responses over TLS on a real server on loopback."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from agentkube.bounded_headers import Implementation, bounded_headers
from tests.standins.serving import raw_request, serve

IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["httptools", "h11"])
Message = MutableMapping[str, Any]
App = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """What a protocol wrote, one entry per write (writelines counts as one)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )


async def _serve_one(
    app: App,
    protocol_class: type[Any],
    transport: RecordingTransport | None = None,
    request: bytes = REQUEST,
) -> RecordingTransport:
    """One request to ``app`` through ``protocol_class``, on a recording transport."""
    config = uvicorn.Config(app, http=protocol_class)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = transport or RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await asyncio.wait_for(asyncio.gather(*protocol.tasks), timeout=5)
    await asyncio.sleep(0)  # a held write's release
    protocol.connection_lost(None)
    return transport


async def _whole(scope: Message, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


@IMPLEMENTATIONS
async def test_a_whole_response_is_one_write(implementation: Implementation) -> None:
    transport = await _serve_one(_whole, bounded_headers(implementation=implementation))

    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello"


@IMPLEMENTATIONS
async def test_a_head_response_with_no_body_write_still_leaves(
    implementation: Implementation,
) -> None:
    transport = RecordingTransport()
    await _serve_one(_whole, bounded_headers(implementation=implementation), transport, HEAD)

    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n")  # the head alone, as HEAD asks


@IMPLEMENTATIONS
async def test_streamed_chunks_each_leave_as_they_are_sent(implementation: Implementation) -> None:
    seen: list[int] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(len(transport.writes))  # held: the first chunk may come at once
        await asyncio.sleep(0.01)  # the app waits (for its upstream): the head goes alone
        seen.append(len(transport.writes))
        for chunk in (b"data: 1\n\n", b"data: 2\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            seen.append(len(transport.writes))
        await send({"type": "http.response.body", "body": b""})

    transport = RecordingTransport()
    await _serve_one(app, bounded_headers(implementation=implementation), transport)

    assert seen == [0, 1, 2, 3]
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert b"data: 1" in transport.writes[1] and b"data: 2" in transport.writes[2]
    assert transport.writes[-1] == b"0\r\n\r\n"  # the chunked stream's end


@IMPLEMENTATIONS
async def test_a_head_sent_just_before_the_app_fails_still_leaves(
    implementation: Implementation,
) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("the app broke off")

    transport = await _serve_one(app, bounded_headers(implementation=implementation))

    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.closed  # uvicorn breaks the response off: the client sees no clean end


@IMPLEMENTATIONS
def test_a_streamed_head_reaches_the_client_before_the_first_chunk_is_sent(
    implementation: Implementation,
) -> None:
    release = threading.Event()

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while not release.is_set():  # the first token is minutes away
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, http=bounded_headers(implementation=implementation)) as url:
        sock = raw_request(url, REQUEST)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(4096)
                assert chunk, "the server closed the connection"
                received += chunk
        except TimeoutError:
            raise AssertionError(f"no head before the first chunk; got {received!r}") from None
        finally:
            release.set()
        assert b"data: 1" not in received
        sock.settimeout(5)
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(4096)
        sock.close()
    assert received.startswith(b"HTTP/1.1 200 OK") and b"data: 1" in received


def test_over_tls_whole_and_streamed_responses_arrive_intact(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=server", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/whole":
            await _whole(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(3):
            await send({"type": "http.response.body", "body": b"%d;" % n, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with (
        serve(app, http=bounded_headers(), tls=(cert, key)) as url,
        httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client,
    ):
        whole = [client.get(f"{url}/whole") for _ in range(2)]  # the second on the same connection
        streamed = client.get(f"{url}/stream")
    assert [r.content for r in whole] == [b"hello", b"hello"]
    assert streamed.content == b"0;1;2;"


async def test_uvicorn_itself_writes_the_head_alone() -> None:
    """The harness: uvicorn's own protocol writes twice, so the one write above is the
    coalescing's doing, not the recording transport's."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    transport = await _serve_one(_whole, HttpToolsProtocol)

    assert len(transport.writes) == 2 and transport.writes[1] == b"hello"
