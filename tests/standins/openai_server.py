"""A stand-in for an OpenAI-compatible model server, speaking real HTTP on loopback.

The LLM is the one component that cannot run on the test machines, so this server plays it: a
test scripts the replies (text, or tool calls) and the server returns them through the real
``/v1/chat/completions`` wire format, streamed (SSE chunks) or not, so agentkube's real OpenAI
client path is exercised end to end. It records every request it received (and its headers).
A reply may be an error (status and body, as a real server sends them); ``stream_gate`` holds a
stream after its first text piece until the test sets it, to show chunks arrive as they are sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200
    error: dict[str, Any] | None = None


@dataclass
class ScriptedModel:
    """The replies to give, in order, and the requests received."""

    model: str = "standin-model"
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stream_gate: threading.Event | None = None
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def next_reply(self) -> Reply:
        if not self.replies:
            return Reply(text="(the stand-in has no scripted reply left)")
        return self.replies.pop(0)


def _message(reply: Reply, ids: Iterator[int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{next(ids)}",
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    return message


def _chunks(
    reply: Reply, model: str, ids: Iterator[int], gate: threading.Event | None = None
) -> Iterator[str]:
    base = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    # Text arrives in small pieces, as a real server streams tokens.
    for start in range(0, len(reply.text), 4):
        yield chunk({"content": reply.text[start : start + 4]})
        if gate is not None and start == 0:  # a sync generator runs in a thread: it may block
            gate.wait(timeout=30)
    for index, call in enumerate(reply.tool_calls):
        call_id = f"call_{next(ids)}"
        args = json.dumps(call.arguments)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for start in range(0, len(args), 16):
            yield chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": args[start : start + 16]}}
                    ]
                }
            )
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def create_app(script: ScriptedModel) -> FastAPI:
    app = FastAPI(title="OpenAI-compatible stand-in")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": script.model, "object": "model"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        body = await request.json()
        script.requests.append(body)
        script.headers.append(dict(request.headers))
        reply = script.next_reply()
        if reply.status != 200:
            return JSONResponse(reply.error or {}, status_code=reply.status)
        if body.get("stream"):
            return StreamingResponse(
                _chunks(reply, script.model, script._ids, script.stream_gate),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": script.model,
                "choices": [
                    {
                        "index": 0,
                        "message": _message(reply, script._ids),
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await request.json()
        script.requests.append(body)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return {"object": "list", "data": data, "model": body["model"], "usage": usage}

    return app
