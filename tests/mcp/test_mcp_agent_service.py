"""`mcp:<url>` tools in the agent service (`agentkube agent serve`, what runs in agent pods): the
MCP session opens in the app's lifespan and tasks running in their own asyncio tasks use it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.runtime.agent import AgentRuntime
from agentkube.runtime.mcp_tools import McpSettings, open_mcp_tools, server_prefixes
from agentkube.runtime.server import create_app
from agentkube.runtime.tools import ToolEnvironment
from tests.runtime.helpers import agent_from, runtime_for
from tests.standins.mcp_server import mcp_server
from tests.standins.serving import serve


def add_once(tool: str) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    """Each task calls ``tool`` once, then answers."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if isinstance(last, ModelRequest) and any(
            isinstance(p, UserPromptPart) for p in last.parts
        ):
            return ModelResponse(parts=[ToolCallPart(tool, {"a": 1, "b": 2})])
        return ModelResponse(parts=[TextPart("added")])

    return respond


def test_concurrent_tasks_of_the_agent_service_call_the_mcp_server() -> None:
    with mcp_server() as url:
        [prefix] = server_prefixes([url]).values()
        tools = [f"mcp:{url}"]

        @asynccontextmanager
        async def runtime() -> AsyncIterator[AgentRuntime]:
            async with open_mcp_tools(tools, McpSettings()) as mcp:
                env = ToolEnvironment(toolsets=tuple(mcp.toolsets))
                agent = agent_from(json.dumps({"model": "m", "tools": tools, "memory": "none"}))
                model = FunctionModel(add_once(f"{prefix}_add"))
                yield runtime_for(agent, model, tools=env)

        with serve(create_app(runtime)) as api, httpx.Client(base_url=api, timeout=10) as http:
            ids = [http.post("/v1/tasks", json={"task": f"t{n}"}).json()["id"] for n in range(3)]
            views = [_wait_done(http, task_id) for task_id in ids]
    assert [v["status"] for v in views] == ["succeeded"] * 3, views
    calls = [[(c["name"], c["result"]) for c in v["result"]["tool_calls"]] for v in views]
    assert calls == [[(f"{prefix}_add", "3")]] * 3


def _wait_done(http: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view: dict[str, Any] = http.get(f"/v1/tasks/{task_id}").json()
        if view["status"] in ("succeeded", "failed"):
            return view
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")
