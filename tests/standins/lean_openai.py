"""A lean OpenAI-compatible stand-in upstream: fixed answers, served as fast as Python can.

The benchmark's rate row needs an upstream that is not the bottleneck; the scripted stand-in
(openai_server.py, FastAPI on uvicorn) serves under 300 requests/s on two shared cores. This one
is a raw asyncio ``Protocol`` with httptools (uvicorn's C parser) and answers every request from
prepared bytes: ``POST /v1/chat/completions`` a fixed completion, or a fixed SSE stream of a few
chunks when the body asks for ``"stream": true``; ``GET /v1/models`` one model; anything else
404. Keep-alive, and pipelined requests are answered in order. It records nothing.

    .venv/bin/python -m tests.standins.lean_openai --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import cast

import httptools

MODEL = "standin-model"
_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-lean",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A sandbox gets 128 MiB."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-lean", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    return b"data: " + json.dumps({**body, "choices": [choice]}).encode() + b"\n\n"


_EVENTS = [
    _chunk({"role": "assistant", "content": ""}),
    *(_chunk({"content": piece}) for piece in ("A sa", "ndbo", "x ge", "ts 1", "28 MiB.")),
    _chunk({}, "stop"),
    b"data: [DONE]\n\n",
]


def _whole(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _stream() -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in _EVENTS)
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )


COMPLETION = _whole(b"200 OK", _COMPLETION)
STREAM = _stream()
MODELS = _whole(b"200 OK", _MODELS)
NOT_FOUND = _whole(b"404 Not Found", b'{"detail":"Not Found"}')


class LeanOpenAI(asyncio.Protocol):
    """One connection: parse with httptools, answer each complete request from bytes."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        method, path = self.parser.get_method(), self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        self.url, self.body = b"", []
        if method == b"POST" and path == b"/v1/chat/completions":
            answer = STREAM if b'"stream": true' in body or b'"stream":true' in body else COMPLETION
        elif method == b"GET" and path == b"/v1/models":
            answer = MODELS
        else:
            answer = NOT_FOUND
        self.transport.write(answer)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(LeanOpenAI, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    opts = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(opts.host, opts.port))
    else:
        uvloop.run(serve(opts.host, opts.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
