"""A stand-in for an OpenAI-compatible model server, run as a pod in the end-to-end test.

The LLM is the one component that cannot run here. This stand-in answers the way a model that
uses its tools would, and does no reasoning of its own: to a user turn holding a fenced Python
block it replies with a `python-interpreter` tool call carrying that block; to a tool result it
replies with text quoting the result verbatim. So an answer that holds the program's output can
only have come from code the agent really ran in its sandbox.

Standard library only, so it runs from the project's image with the image's python
(`python3 model_standin.py PORT`): `POST /v1/chat/completions`, streamed (SSE, the whole reply as
one chunk then the finish chunk) or not, and `GET /v1/models`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "llama-3-70b"
TOOL = "python-interpreter"
FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def reply(request: dict[str, Any]) -> dict[str, Any]:
    """The chat completion for one request."""
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    if last.get("role") == "tool":
        message["content"] = f"The sandbox returned: {last.get('content')}"
    else:
        text = last.get("content") if isinstance(last.get("content"), str) else ""
        blocks = FENCE.findall(text or "")
        offered = {t.get("function", {}).get("name") for t in request.get("tools") or []}
        if blocks and TOOL in offered:
            call = {"code": blocks[0].strip("\n")}
            message["tool_calls"] = [
                {
                    "id": f"call-{time.monotonic_ns()}",
                    "type": "function",
                    "function": {"name": TOOL, "arguments": json.dumps(call)},
                }
            ]
            finish = "tool_calls"
        else:
            message["content"] = "No fenced Python block, or no python-interpreter tool."
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            self._send(400, {"error": {"message": "the body is not JSON"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
        elif request.get("stream"):
            self._stream(reply(request))
        else:
            self._send(200, reply(request))

    def _stream(self, completion: dict[str, Any]) -> None:
        """The completion as chat.completion.chunk events: its message as one delta (a tool
        call's `index` added), then the finish reason with the usage, then [DONE]."""
        choice = completion["choices"][0]
        delta = {k: v for k, v in choice["message"].items() if v is not None}
        for i, call in enumerate(delta.get("tool_calls", [])):
            call["index"] = i
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
                "usage": completion["usage"],
            },
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
