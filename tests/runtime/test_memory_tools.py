"""Memory as tools: an agent remembers across runtimes and conversations, searches its knowledge,
and a store that is down is a tool result, not a failed run (embedded stores, real wordllama)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.memory.agent_memory import AgentMemory
from agentkube.memory.ingestion import Document, ingest
from agentkube.memory.settings import MemorySettings, open_embedder, open_vector_store
from agentkube.runtime.memory_tools import memory_toolset, wants_memory_tools
from agentkube.runtime.tools import ToolEnvironment
from tests.runtime.helpers import agent_from, runtime_for


def calls_then_reports(tool: str, args: dict[str, Any]) -> FunctionModel:
    """Calls ``tool`` once with ``args``, then answers with what it returned (as JSON)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [
            p
            for m in messages
            if isinstance(m, ModelRequest)
            for p in m.parts
            if isinstance(p, ToolReturnPart)
        ]
        if not returns:
            assert tool in {t.name for t in info.function_tools}
            return ModelResponse(parts=[ToolCallPart(tool, args)])
        return ModelResponse(parts=[TextPart(json.dumps(returns[-1].content))])

    return FunctionModel(respond)


def _memory(agent_name: str, data_dir: Path, **environ: str) -> AgentMemory:
    return AgentMemory(MemorySettings.from_env(environ, data_dir=data_dir), agent=agent_name)


async def _run(spec: str, model: FunctionModel, memory: AgentMemory, conversation: str) -> Any:
    agent = agent_from(spec)
    tools = ToolEnvironment(toolsets=(memory_toolset(agent, memory),))
    try:
        outcome = await runtime_for(agent, model, tools=tools).run("go", conversation=conversation)
    finally:
        await memory.aclose()
    return json.loads(outcome.output), outcome


async def test_a_fact_remembered_in_one_run_is_recalled_in_another_conversation(
    tmp_path: Path,
) -> None:
    spec = "{model: m, memory: persistent}"
    remembered, outcome = await _run(
        spec,
        calls_then_reports("remember", {"fact": "The user prefers metric units."}),
        _memory("tester", tmp_path),
        "first",
    )
    assert remembered["remembered"] == "The user prefers metric units."
    assert outcome.tool_calls[0].name == "remember" and outcome.tool_calls[0].ok
    # A new runtime and memory (a restarted process), another conversation.
    recalled, _ = await _run(
        spec,
        calls_then_reports("recall", {"query": "which units does the user like?"}),
        _memory("tester", tmp_path),
        "second",
    )
    assert recalled["facts"][0]["text"] == "The user prefers metric units."


async def test_an_agent_with_rag_searches_its_knowledge_with_sources(tmp_path: Path) -> None:
    settings = MemorySettings.from_env({}, data_dir=tmp_path)
    store, embedder = open_vector_store(settings), await open_embedder(settings)
    try:
        docs = [
            Document(
                source="/kb/sandbox.md",
                text="# Sandboxes\n\nA sandbox gets 128 MiB.",
                markdown=True,
            ),
            Document(
                source="/kb/gpu.md", text="# GPUs\n\nInference runs on the GPU pool.", markdown=True
            ),
        ]
        await ingest(store, embedder, "handbook", docs)
    finally:
        await store.aclose()
        await embedder.aclose()
    found, _ = await _run(
        "{model: m, rag: {collection: handbook, topK: 1}}",
        calls_then_reports("search_knowledge", {"query": "how much memory does a sandbox get"}),
        _memory("tester", tmp_path),
        "c",
    )
    (passage,) = found["passages"]
    assert passage["source"] == "/kb/sandbox.md" and "128 MiB" in passage["text"]


async def test_a_vector_store_that_is_down_is_a_tool_result_the_run_survives(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    memory = _memory("tester", tmp_path, AGENTKUBE_VECTOR_URL=f"http://127.0.0.1:{port}")
    result, outcome = await _run(
        "{model: m, memory: persistent}",
        calls_then_reports("remember", {"fact": "x"}),
        memory,
        "c",
    )
    assert "memory is unavailable" in result["error"] and str(port) in result["error"]
    assert outcome.tool_calls[0].ok is False


def test_only_agents_that_ask_for_memory_get_memory_tools() -> None:
    assert wants_memory_tools(agent_from("{model: m, memory: persistent}"))
    assert wants_memory_tools(agent_from("{model: m, rag: {collection: handbook}}"))
    assert not wants_memory_tools(agent_from("{model: m, memory: ephemeral}"))
