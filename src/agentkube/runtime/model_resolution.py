"""Decide which model answers an agent, and build it.

Order, first match wins:

1. ``--model NAME`` (or the spec's ``model``) is ``offline`` -> the offline demo model;
2. a ``Model`` of that name with ``spec.endpoint`` (from the same manifest file) -> its URL;
3. an explicit base URL (``--base-url``, ``AGENTKUBE_MODEL_BASE_URL``, ``OPENAI_BASE_URL``) ->
   that OpenAI-compatible endpoint, with the model id ``AGENTKUBE_MODEL_ID`` or the name;
4. otherwise the offline demo model, and the run output says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic_ai.models import Model as PydanticAIModel

from agentkube.api import pod_contract as pc
from agentkube.api.models import Agent, Model
from agentkube.runtime.errors import ModelConfigError
from agentkube.runtime.offline import OFFLINE_MODEL_NAME, offline_model
from agentkube.telemetry.propagation import inject

if TYPE_CHECKING:
    import httpx

BASE_URL_VARS = (pc.ENV_MODEL_BASE_URL, "OPENAI_BASE_URL")
API_KEY_VARS = (pc.ENV_MODEL_API_KEY, "OPENAI_API_KEY")


@dataclass(frozen=True, kw_only=True)
class ModelChoice:
    requested: str
    kind: Literal["offline", "openai"]
    model_id: str
    base_url: str | None = None
    api_key: str | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """How the run output names the model that answered."""
        if self.kind == "offline":
            return self.model_id
        return f"{self.model_id} @ {self.base_url}"


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[n] for n in names if environ.get(n)), None)


def choose_model(
    agent: Agent,
    models: list[Model],
    *,
    override: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str],
) -> ModelChoice:
    requested = override or agent.spec.model
    key = api_key or _first(environ, API_KEY_VARS)
    if requested == OFFLINE_MODEL_NAME:
        return ModelChoice(requested=requested, kind="offline", model_id=OFFLINE_MODEL_NAME)
    declared = next((m for m in models if m.metadata.name == requested), None)
    if declared is not None and declared.spec.endpoint is not None and base_url is None:
        endpoint = declared.spec.endpoint
        return ModelChoice(
            requested=requested,
            kind="openai",
            model_id=endpoint.model or requested,
            base_url=endpoint.url,
            api_key=key,
        )
    url = base_url or _first(environ, BASE_URL_VARS)
    if url:
        if not url.startswith(("http://", "https://")):
            raise ModelConfigError(f"model base URL {url!r} must start with http:// or https://")
        model_id = environ.get(pc.ENV_MODEL_ID) or requested
        return ModelChoice(
            requested=requested, kind="openai", model_id=model_id, base_url=url, api_key=key
        )
    return ModelChoice(
        requested=requested,
        kind="offline",
        model_id=OFFLINE_MODEL_NAME,
        note=f"no endpoint is configured for model {requested!r}; the offline demo model answers "
        "instead",
    )


@asynccontextmanager
async def open_model(
    choice: ModelChoice, *, timeout_s: float = 120.0
) -> AsyncIterator[PydanticAIModel]:
    """The pydantic-ai model for a choice; its HTTP client is closed on exit."""
    if choice.kind == "offline":
        yield offline_model()
        return
    # Imported here: the OpenAI client stack is heavy and the offline model never needs it.
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(
        base_url=choice.base_url,
        # Local servers (vLLM, llama.cpp) accept any key; the client insists on one.
        api_key=choice.api_key or "unused",
        max_retries=1,
        timeout=timeout_s,
        # the chat span's trace context goes to the model (or the RAG proxy in front of it)
        http_client=DefaultAsyncHttpxClient(event_hooks={"request": [_send_trace_context]}),
    )
    try:
        yield OpenAIChatModel(choice.model_id, provider=OpenAIProvider(openai_client=client))
    finally:
        await client.close()


async def _send_trace_context(request: httpx.Request) -> None:
    request.headers.update(inject())
