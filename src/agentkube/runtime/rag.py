"""``spec.rag`` on one machine: the sidecar's enrichment, in process.

In a cluster the operator puts the RAG proxy next to the agent and points the model URL at it
(``AGENTKUBE_RAG_SIDECAR`` tells the runtime so, and it does nothing here). On one machine the
same proxy runs in process: for an OpenAI-compatible endpoint, the caller's ``rag_front`` (the
CLI passes :func:`agentkube.sidecar.local.local_rag_front`: the sidecar's app on a loopback
port) and the model client is pointed at it; for the offline demo model, which has no HTTP to
intercept, a model that retrieves for the question and quotes the passages with their sources —
the demo shows what the sidecar found, as the offline model shows what the sandbox computed.
The runtime does not import the proxy's server itself: HTTP servers stay out of its layers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model as PydanticAIModel
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkube.api import sidecar_contract as sc
from agentkube.api.models import Agent
from agentkube.memory.knowledge import Passage
from agentkube.memory.settings import MemorySettings
from agentkube.runtime.errors import ModelConfigError
from agentkube.runtime.model_resolution import ModelChoice, open_model
from agentkube.runtime.offline import OFFLINE_MODEL_NAME, code_blocks, latest_task, respond
from agentkube.sidecar.errors import RetrievalFailed
from agentkube.sidecar.forwarding import ProxyConfig
from agentkube.sidecar.retrieval import Retriever, open_knowledge_retriever
from agentkube.telemetry import spans

RagFront = Callable[[ProxyConfig, MemorySettings], AbstractAsyncContextManager[str]]
"""Starts the proxy for a configuration; yields the base URL (``.../v1``) to send to."""

OFFLINE_RAG_NOTE = (
    "the offline demo model does no reasoning: it quotes the passages the RAG sidecar retrieved "
    "for the question"
)


def _quote(passages: Sequence[Passage], collections: Sequence[str]) -> str:
    lines = [f"From the knowledge base ({', '.join(collections)}):"]
    for n, p in enumerate(passages, 1):
        lines.append(f"[{n}] {' '.join(p.text.split())}")
    lines.append("")
    lines += [f"[{n}] {p.source or 'unknown'}" for n, p in enumerate(passages, 1)]
    lines.append(f"({OFFLINE_RAG_NOTE})")
    return "\n".join(lines)


def offline_rag_model(
    retriever: Retriever, collections: Sequence[str], top_k: int
) -> FunctionModel:
    """The offline demo model, answering a question without code from the retrieved passages."""

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        question = latest_task(messages)
        if code_blocks(question) or not question.strip():
            return respond(messages, info)
        attributes = {spans.OPERATION: "retrieval", spans.DATA_SOURCE: ",".join(collections)}
        with spans.span(f"retrieval {','.join(collections)}", attributes=attributes) as span:
            try:
                passages = await retriever.retrieve(collections, question, top_k)
            except RetrievalFailed as e:  # fail-open, as the sidecar does
                spans.mark_failed(str(e))
                return ModelResponse(parts=[TextPart(f"(no context: {e}; {OFFLINE_RAG_NOTE})")])
            span.set_attribute(spans.CHUNKS, len(passages))
        if not passages:
            return respond(messages, info)
        return ModelResponse(parts=[TextPart(_quote(passages, collections))])

    return FunctionModel(answer, model_name=OFFLINE_MODEL_NAME)


@asynccontextmanager
async def open_agent_model(
    agent: Agent,
    choice: ModelChoice,
    environ: dict[str, str],
    data_dir: Path,
    rag_front: RagFront | None = None,
) -> AsyncIterator[PydanticAIModel]:
    """The model for ``agent``: with ``spec.rag`` and no sidecar in front of it, enriched here."""
    rag = agent.spec.rag
    if rag is None or environ.get(sc.ENV_RAG_SIDECAR):
        async with open_model(choice) as model:
            yield model
        return
    settings = MemorySettings.from_env(environ, data_dir=data_dir)
    collections = (rag.collection,)
    if choice.kind == "offline":
        async with open_knowledge_retriever(settings, warm=collections) as retriever:
            yield offline_rag_model(retriever, collections, rag.top_k)
        return
    if rag_front is None:
        raise ModelConfigError(
            f"Agent {agent.metadata.name}: spec.rag needs the RAG proxy in front of the model; "
            "run it with `agentkube run` / `agentkube agent serve`, or set "
            f"{sc.ENV_RAG_SIDECAR} when a sidecar already enriches"
        )
    config = ProxyConfig(upstream=choice.base_url or "", collections=collections, top_k=rag.top_k)
    async with (
        rag_front(config, settings) as proxy_url,
        open_model(replace(choice, base_url=proxy_url)) as model,
    ):
        yield model
