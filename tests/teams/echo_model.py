"""An OpenAI-compatible stand-in that echoes each task after a delay (a slow, honest executor).

Replicas in the hand-off tests run with the real OpenAI client against it, so their tasks take
real time (and can be killed mid-task) and each answer names the task it belongs to.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from tests.standins.openai_server import Reply, _chunks

MODEL = "echo-model"


def create_app(delay_s: float) -> FastAPI:
    app = FastAPI(title="echo model stand-in")
    ids = itertools.count()
    served: list[str] = []
    app.state.served = served

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        task = str(body["messages"][-1]["content"])
        await asyncio.sleep(delay_s)
        served.append(task)
        return StreamingResponse(
            _chunks(Reply(text=f"echo: {task}"), MODEL, ids), media_type="text/event-stream"
        )

    return app
