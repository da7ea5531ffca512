"""The proxy's upstream pool against a real server on loopback that counts its connections and
can close them (tests/standins/lean_openai.py, with a few hooks), alone and under the proxy; and
over TLS, in front of the scripted stand-in with a self-signed certificate."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpcore
import httpx
import pytest

from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.settings import MemorySettings
from agentkube.sidecar.upstream import UpstreamPool
from tests.sidecar.conftest import running_proxy
from tests.standins import lean_openai
from tests.standins.openai_server import ScriptedModel
from tests.standins.openai_server import create_app as create_model_app
from tests.standins.serving import serve

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
STREAM_BODY = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'


class CountingServer:
    """The lean stand-in on a port of its own, in a thread: connections opened, and switches to
    close every open connection or to break streams off after their first event."""

    def __init__(self) -> None:
        self.connections: list[asyncio.Transport] = []
        self.break_streams = False
        self.hold_streams = False
        self.lost = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0

    def protocol(self) -> lean_openai.LeanOpenAI:
        server = self

        class Counted(lean_openai.LeanOpenAI):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                assert self.transport is not None
                server.connections.append(self.transport)

            def connection_lost(self, exc: Exception | None) -> None:
                server.lost += 1

            def on_message_complete(self) -> None:
                streamed = b"stream" in b"".join(self.body)
                if (server.break_streams or server.hold_streams) and streamed:
                    # The head and the first event; then the connection closes, or stays
                    # silent like a model thinking.
                    assert self.transport is not None
                    head, _, rest = lean_openai.STREAM.partition(b"\r\n\r\n")
                    first = rest[: rest.index(b"\n\n\r\n") + 5]
                    self.transport.write(head + b"\r\n\r\n" + first)
                    if server.break_streams:
                        self.transport.close()
                    return
                super().on_message_complete()

        return Counted()

    def close_all(self) -> None:
        def close() -> None:
            for transport in self.connections:
                transport.close()

        self.loop.call_soon_threadsafe(close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def upstream() -> Iterator[CountingServer]:
    server = CountingServer()
    started = threading.Event()

    stop = asyncio.Event()

    async def run() -> None:
        listening = await server.loop.create_server(server.protocol, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        started.set()
        async with listening:
            await stop.wait()
            for transport in server.connections:
                transport.close()

    thread = threading.Thread(target=lambda: server.loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    server.loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    server.loop.close()


async def send(pool: UpstreamPool, method: str, url: str, body: bytes = b"") -> httpcore.Response:
    headers = [(b"host", b"upstream"), (b"content-length", str(len(body)).encode())]
    response = await pool.handle_async_request(
        httpcore.Request(method, url, headers=headers, content=body)
    )
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


async def post(pool: UpstreamPool, url: str, body: bytes = BODY) -> bytes:
    response = await send(pool, "POST", f"{url}/v1/chat/completions", body)
    assert response.status == 200
    return response.content


@asynccontextmanager
async def pool_of(server: CountingServer) -> AsyncIterator[UpstreamPool]:
    async with UpstreamPool(server.url) as pool:
        yield pool


async def test_sequential_requests_reuse_one_connection(upstream: CountingServer) -> None:
    async with pool_of(upstream) as pool:
        answers = [await post(pool, upstream.url) for _ in range(5)]
    assert all(b"chat.completion" in a for a in answers)
    assert len(upstream.connections) == 1 and pool.opened == 1


async def test_concurrent_requests_open_connections_that_all_return_to_the_pool(
    upstream: CountingServer,
) -> None:
    async with pool_of(upstream) as pool:
        await asyncio.gather(*(post(pool, upstream.url) for _ in range(4)))
        opened = pool.opened
        assert len(pool.idle) == opened >= 2
        await asyncio.gather(*(post(pool, upstream.url) for _ in range(opened)))
        assert pool.opened == opened  # the second round reused them all


async def test_a_connection_the_upstream_closed_while_idle_is_replaced(
    upstream: CountingServer,
) -> None:
    async with pool_of(upstream) as pool:
        await post(pool, upstream.url)
        upstream.close_all()
        await asyncio.sleep(0.2)  # the close reaches the pool's socket
        assert b"chat.completion" in await post(pool, upstream.url)
    assert len(upstream.connections) == 2 and pool.opened == 2


async def test_an_upstream_closing_mid_stream_is_an_error_and_the_connection_is_dropped(
    upstream: CountingServer,
) -> None:
    upstream.break_streams = True
    async with pool_of(upstream) as pool:
        with pytest.raises(httpcore.RemoteProtocolError):
            await post(pool, upstream.url, STREAM_BODY)
        assert pool.idle == []
        upstream.break_streams = False
        assert b"[DONE]" in await post(pool, upstream.url, STREAM_BODY)
    assert pool.opened == 2


async def test_a_pooled_connection_is_locked_by_the_pool_s_lock_that_never_waits(
    upstream: CountingServer,
) -> None:
    # httpcore takes the connection's state lock around each request's start and end; it is the
    # pool's own (anyio's yields to the event loop on every acquire), so a second holder at
    # once — a bug in the pool — is refused instead of queued.
    async with pool_of(upstream) as pool:
        await post(pool, upstream.url)
        (connection,) = pool.idle
        async with connection._state_lock:
            with pytest.raises(RuntimeError, match="one request at a time"):
                await post(pool, upstream.url)
        assert b"chat.completion" in await post(pool, upstream.url)


async def test_a_pool_refuses_a_request_for_another_origin(upstream: CountingServer) -> None:
    async with pool_of(upstream) as pool:
        with pytest.raises(ValueError, match="this pool serves"):
            await send(pool, "GET", "http://127.0.0.1:1/v1/models")


@contextmanager
def proxy_before(
    server: CountingServer, settings: MemorySettings, embedder: WordLlamaEmbedder
) -> Iterator[str]:
    with running_proxy(settings, embedder, (ScriptedModel(), f"{server.url}/v1")) as proxy:
        yield proxy.base_url


def test_through_the_proxy_a_broken_off_stream_is_broken_off_for_the_client(
    upstream: CountingServer, embedded_knowledge: MemorySettings, embedder: WordLlamaEmbedder
) -> None:
    with proxy_before(upstream, embedded_knowledge, embedder) as base, httpx.Client() as client:
        upstream.break_streams = True
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", f"{base}/chat/completions", content=STREAM_BODY) as broken,
        ):
            for _ in broken.iter_raw():
                pass
        upstream.break_streams = False
        whole = client.post(f"{base}/chat/completions", content=STREAM_BODY)
    assert whole.status_code == 200 and whole.text.endswith("data: [DONE]\n\n")


def test_through_the_proxy_connections_to_the_upstream_are_reused(
    upstream: CountingServer, embedded_knowledge: MemorySettings, embedder: WordLlamaEmbedder
) -> None:
    with proxy_before(upstream, embedded_knowledge, embedder) as base, httpx.Client() as client:
        statuses = [
            client.post(f"{base}/chat/completions", content=BODY).status_code for _ in range(5)
        ]
        upstream.close_all()
        time.sleep(0.2)
        statuses.append(client.post(f"{base}/chat/completions", content=BODY).status_code)
    assert statuses == [200] * 6
    assert len(upstream.connections) == 2


def test_a_client_leaving_a_stream_closes_the_upstream_stream_at_once(
    upstream: CountingServer, embedded_knowledge: MemorySettings, embedder: WordLlamaEmbedder
) -> None:
    upstream.hold_streams = True
    with proxy_before(upstream, embedded_knowledge, embedder) as base:
        with (
            httpx.Client() as client,
            client.stream("POST", f"{base}/chat/completions", content=STREAM_BODY) as held,
        ):
            first = next(held.iter_raw())
        # The client is gone; the upstream is still silent, so only the proxy closing its
        # connection ends the upstream stream.
        deadline = time.monotonic() + 5
        while upstream.lost == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert first.startswith(b"data: ")
    assert upstream.lost == 1


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl, self-signed)."""
    cert, key = tmp_path / "upstream.crt", tmp_path / "upstream.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=upstream", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_an_https_upstream_is_reached_over_tls_and_its_connection_reused(
    self_signed: tuple[Path, Path],
) -> None:
    script = ScriptedModel()
    context = ssl.create_default_context(cafile=str(self_signed[0]))
    with serve(create_model_app(script), tls=self_signed) as url:
        async with UpstreamPool(url, ssl_context=context) as pool:
            answers = [
                await send(pool, "GET", f"{url}/v1/models"),
                await send(pool, "GET", f"{url}/v1/models"),
            ]
            opened = pool.opened
        async with UpstreamPool(url) as untrusting:  # certifi's CAs do not know this one
            with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await send(untrusting, "GET", f"{url}/v1/models")
    assert [a.status for a in answers] == [200, 200]
    assert b"standin-model" in answers[0].content and opened == 1
