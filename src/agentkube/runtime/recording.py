"""Every tool call is recorded: name, arguments, a result summary, duration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_ai import ModelRetry

from agentkube.runtime.events import EventSink, RunEvent, discard

RESULT_SUMMARY_CHARS = 4000


class ToolCallRecord(BaseModel):
    name: str
    args: dict[str, Any]
    result: str
    ok: bool
    duration_ms: float
    delegated: dict[str, Any] | None = None
    """For an ``agent:`` tool, the whole outcome of the subtask (nested in ``--json``)."""


def summarize(text: str, limit: int = RESULT_SUMMARY_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


@dataclass
class ToolCall:
    """One call in progress; the tool sets ``result`` (and ``ok``) before it returns."""

    name: str
    args: dict[str, Any]
    result: str = ""
    ok: bool = True
    delegated: dict[str, Any] | None = None


@dataclass
class ToolRecorder:
    """Collects the tool calls of one run and reports them as events."""

    emit: EventSink = discard
    calls: list[ToolCallRecord] = field(default_factory=list)

    @asynccontextmanager
    async def call(self, name: str, args: dict[str, Any]) -> AsyncIterator[ToolCall]:
        current = ToolCall(name=name, args=args)
        self.emit(RunEvent(kind="tool.started", data={"name": name, "args": args}))
        started = time.perf_counter()
        try:
            yield current
        except ModelRetry as e:
            # The tool refused (bad URL, blocked address): the model sees this message.
            current.ok, current.result = False, e.message
            raise
        except Exception as e:
            current.ok, current.result = False, f"{type(e).__name__}: {e}"
            raise
        finally:
            record = ToolCallRecord(
                name=name,
                args=args,
                result=summarize(current.result),
                ok=current.ok,
                delegated=current.delegated,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            self.calls.append(record)
            self.emit(RunEvent(kind="tool.finished", data=record.model_dump()))
