"""Events a run emits while it works: progress for the CLI, SSE for the HTTP API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

EventKind = Literal[
    "run.started",
    "model.request",
    "model.response",
    "text.delta",
    "tool.started",
    "tool.finished",
    "run.finished",
    "run.failed",
]


class RunEvent(BaseModel):
    kind: EventKind
    data: dict[str, Any] = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


EventSink = Callable[[RunEvent], None]


def discard(_event: RunEvent) -> None:
    """An event sink that drops everything."""
