"""How long each model request takes, measured where pydantic-ai sends it.

:class:`ModelTiming` is a pydantic-ai capability: its ``wrap_model_request`` hook encloses one
model request — what pydantic-ai's ``chat`` span covers: sending it, waiting, and for a streamed
answer reading it to its end — and tells its observers the seconds, whether the model answered
or the request failed. The agent's server turns them into ``agentkube_model_request_seconds``.
Timing the whole run instead would count tool calls and delegations as model latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.capabilities import AbstractCapability, WrapModelRequestHandler
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext


@dataclass
class ModelTiming(AbstractCapability[Any]):
    observers: list[Callable[[float], None]] = field(default_factory=list)
    """Told the seconds of every model request, as it ends."""

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # not for agent specs: the runtime adds it

    async def wrap_model_request(
        self,
        ctx: RunContext[Any],
        *,
        request_context: ModelRequestContext,
        handler: WrapModelRequestHandler,
    ) -> ModelResponse:
        started = time.perf_counter()
        try:
            return await handler(request_context)
        finally:
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(seconds)
