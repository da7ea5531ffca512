"""Memory the model uses deliberately: long-term facts and knowledge search, as tools.

An agent with ``memory: persistent`` gets ``remember(fact)`` and ``recall(query)`` over its own
collection (``agent-<name>-memory``: semantic, across runs and conversations, beside its
conversation history); an agent with ``spec.rag`` also gets ``search_knowledge(query)`` over its
collection (the RAG sidecar does the same transparently for every question). The stores are
those of :mod:`agentkube.memory` — embedded under the data directory, or the servers named by
``AGENTKUBE_VECTOR_URL`` — opened on first use, so a store that is down fails only the calls that
need it, as a tool result with an ``error`` the model can react to; every call is recorded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_ai import RunContext
from pydantic_ai.toolsets import FunctionToolset

from agentkube.api.models import Agent
from agentkube.errors import AgentkubeError
from agentkube.runtime.tools import RunDeps

if TYPE_CHECKING:  # memory (numpy, and Chroma on first use) loads only for agents that use it
    from agentkube.memory.agent_memory import AgentMemory

REMEMBER, RECALL, SEARCH_KNOWLEDGE = "remember", "recall", "search_knowledge"
MAX_RESULTS = 10


def wants_memory_tools(agent: Agent) -> bool:
    return agent.spec.memory == "persistent" or agent.spec.rag is not None


def memory_toolset(agent: Agent, memory: AgentMemory) -> FunctionToolset[RunDeps]:
    """The memory tools ``agent``'s spec asks for."""
    toolset: FunctionToolset[RunDeps] = FunctionToolset(max_retries=2)

    async def remember(ctx: RunContext[RunDeps], fact: str) -> dict[str, Any]:
        """Remember one fact for later runs and conversations (a short, self-contained sentence).

        Args:
            fact: what to remember.
        """
        async with ctx.deps.recorder.call(REMEMBER, {"fact": fact}) as call:
            result = await _guarded(lambda: _remember(memory, fact))
            call.result, call.ok = json.dumps(result), "error" not in result
            return result

    async def recall(ctx: RunContext[RunDeps], query: str, k: int = 5) -> dict[str, Any]:
        """Recall the remembered facts nearest in meaning to a query.

        Args:
            query: what to look for.
            k: how many facts, at most 10.
        """
        async with ctx.deps.recorder.call(RECALL, {"query": query, "k": k}) as call:
            result = await _guarded(lambda: _recall(memory, query, k))
            call.result, call.ok = json.dumps(result), "error" not in result
            return result

    if agent.spec.memory == "persistent":
        toolset.add_function(remember, name=REMEMBER)
        toolset.add_function(recall, name=RECALL)
    if agent.spec.rag is not None:
        collection, top_k = agent.spec.rag.collection, agent.spec.rag.top_k

        async def search_knowledge(ctx: RunContext[RunDeps], query: str) -> dict[str, Any]:
            """Search the agent's knowledge base for passages about a query, with sources.

            Args:
                query: what to look for.
            """
            async with ctx.deps.recorder.call(SEARCH_KNOWLEDGE, {"query": query}) as call:
                result = await _guarded(lambda: _search(memory, collection, query, top_k))
                call.result, call.ok = json.dumps(result), "error" not in result
                return result

        toolset.add_function(search_knowledge, name=SEARCH_KNOWLEDGE)
    return toolset


async def _guarded(work: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await work()
    except AgentkubeError as e:  # a store down, a refused collection: the model's to react to
        return {"error": f"memory is unavailable: {e}"}
    return result


async def _remember(memory: AgentMemory, fact: str) -> dict[str, Any]:
    fact_id = await (await memory.long_term()).remember(fact)
    return {"remembered": fact.strip(), "id": fact_id}


async def _recall(memory: AgentMemory, query: str, k: int) -> dict[str, Any]:
    found = await (await memory.long_term()).recall(query, max(1, min(k, MAX_RESULTS)))
    return {"facts": [{"text": r.text, "score": round(r.score, 3)} for r in found]}


async def _search(memory: AgentMemory, collection: str, query: str, k: int) -> dict[str, Any]:
    passages = await (await memory.knowledge()).search(collection, query, k)
    return {
        "passages": [
            {"text": p.text, "source": p.source, "score": round(p.score, 3)} for p in passages
        ]
    }


@asynccontextmanager
async def open_memory_tools(
    agent: Agent, environ: Mapping[str, str], data_dir: Path
) -> AsyncIterator[tuple[FunctionToolset[RunDeps], ...]]:
    """The agent's memory toolset (none if its spec asks for no memory tools); stores closed
    on exit."""
    if not wants_memory_tools(agent):
        yield ()
        return
    from agentkube.memory.agent_memory import AgentMemory
    from agentkube.memory.settings import MemorySettings

    settings = MemorySettings.from_env(dict(environ), data_dir=data_dir)
    memory = AgentMemory(settings, agent=agent.metadata.name)
    try:
        yield (memory_toolset(agent, memory),)
    finally:
        await memory.aclose()
