"""The facade the runtime uses: sessions of pydantic-ai messages, long-term memory, knowledge."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

from agentkube.memory import (
    AgentMemory,
    LongTermMemory,
    MemorySettings,
    SessionHistory,
    Sessions,
    StateStore,
    VectorStore,
    new_conversation_id,
)
from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.errors import StoreUnavailable
from agentkube.memory.ingestion import ingest, read_documents


def exchange(question: str, answer: str) -> list[ModelRequest | ModelResponse]:
    return [
        ModelRequest(parts=[UserPromptPart(content=question)]),
        ModelResponse(parts=[TextPart(content=answer)]),
    ]


async def test_a_conversation_continues_where_it_left_off(state_store: StateStore) -> None:
    sessions = Sessions(state_store)
    conversation = new_conversation_id()
    await sessions.append("planner", conversation, exchange("hi", "hello"))
    await sessions.append("planner", conversation, exchange("and then?", "then this"))
    messages = await sessions.load("planner", conversation)
    contents = [getattr(m.parts[0], "content", None) for m in messages]
    assert contents == ["hi", "hello", "and then?", "then this"]
    assert await sessions.load("planner", new_conversation_id()) == []


async def test_session_history_is_the_runtimes_history_store_for_one_conversation(
    state_store: StateStore,
) -> None:
    history = SessionHistory(Sessions(state_store), "conv-1")
    await history.append("default/planner", exchange("q", "a"))
    assert len(await history.load("default/planner")) == 2
    assert await SessionHistory(Sessions(state_store), "conv-2").load("default/planner") == []


async def test_an_agent_recalls_what_it_remembered_by_meaning(
    vector_store: VectorStore, embedder: WordLlamaEmbedder
) -> None:
    memory = LongTermMemory(vector_store, embedder, "assistant", clock=lambda: 1000.0)
    assert await memory.recall("anything") == []
    await memory.remember("The user's favourite colour is green.")
    await memory.remember("The deployment runs in the eu-west region.")
    fact = await memory.remember("The user's favourite colour is green.")  # same fact: one memory
    recalled = await memory.recall("what colour does the user like?", k=5)
    assert len(recalled) == 2
    assert recalled[0].id == fact and "green" in recalled[0].text
    assert recalled[0].remembered_at == 1000.0
    await memory.forget(fact)
    assert [r.text for r in await memory.recall("colour", k=5)] == [
        "The deployment runs in the eu-west region."
    ]


async def test_memory_outlives_the_process_that_wrote_it(tmp_path: Path) -> None:
    settings = MemorySettings(data_dir=tmp_path)
    first = AgentMemory(settings, "assistant")
    await (await first.long_term()).remember("The build server is called hopper.")
    await first.sessions().append("assistant", "c1", exchange("name?", "hopper"))
    await first.aclose()
    second = AgentMemory(settings, "assistant")
    try:
        recalled = await (await second.long_term()).recall("build server name")
        assert recalled[0].text == "The build server is called hopper."
        assert len(await second.sessions().load("assistant", "c1")) == 2
    finally:
        await second.aclose()


async def test_sessions_keep_working_while_the_vector_store_is_down(tmp_path: Path) -> None:
    settings = MemorySettings(data_dir=tmp_path, vector_url="http://127.0.0.1:9")
    memory = AgentMemory(settings, "assistant")
    try:
        await memory.sessions().append("assistant", "c1", exchange("q", "a"))
        assert len(await memory.sessions().load("assistant", "c1")) == 2
        with pytest.raises(StoreUnavailable, match=r"http://127\.0\.0\.1:9"):
            await (await memory.long_term()).recall("anything")
    finally:
        await memory.aclose()


async def test_an_agent_searches_an_ingested_collection(
    vector_store: VectorStore, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "runbook.md").write_text(
        "# Runbook\n\n## Restart\n\nTo restart the payment service run `make restart-payments`.\n\n"
        "## Holidays\n\nThe office is closed on public holidays.\n",
        encoding="utf-8",
    )
    await ingest(vector_store, embedder, "runbook", read_documents([tmp_path], print))
    from agentkube.memory.knowledge import Knowledge

    passages = await Knowledge(vector_store, embedder).search(
        "runbook", "restart payment service", 1
    )
    assert len(passages) == 1 and "make restart-payments" in passages[0].text
    assert passages[0].source == str(tmp_path / "runbook.md")
