"""Building an execution request from what a caller typed: one parser for every front end.

``agentkube sandbox exec`` (flags) and ``agentkube sandbox mcp`` (flags, then each tool call's
arguments) share these, so both refuse the same input with the same one-line
:class:`SandboxRequestError` and run with the same limits.
"""

from __future__ import annotations

import math
from typing import get_args

from pydantic import ValidationError

from agentkube.api.loading import describe
from agentkube.api.quantity import parse_bytes, parse_cpu
from agentkube.sandbox.contract import ExecutionRequest, Language, Limits
from agentkube.sandbox.errors import SandboxRequestError

LANGUAGES: tuple[str, ...] = get_args(Language)


def parse_language(value: str) -> Language:
    if value not in LANGUAGES:
        raise SandboxRequestError(f"--language {value!r} is not supported: use python or bash")
    return value  # type: ignore[return-value]  # checked against Language just above


def parse_timeout(value: str | float | None, name: str = "--timeout") -> float:
    """Seconds, from a flag or an argument; ``None`` is the contract's default."""
    if value is None:
        return Limits().timeout_s
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise SandboxRequestError(f"{name} {value!r} must be a positive number of seconds")
    return seconds


def _memory(value: str | None) -> int:
    if value is None:
        return Limits().memory_bytes
    try:
        return parse_bytes(value)
    except ValueError as e:
        raise SandboxRequestError(f"--memory: {e}") from e


def _cpu(value: str | None) -> float:
    if value is None:
        return Limits().cpu
    try:
        return parse_cpu(value)
    except ValueError as e:
        raise SandboxRequestError(f"--cpu: {e}") from e


def build_limits(timeout: str | None, memory: str | None, cpu: str | None) -> Limits:
    """The limits the ``--timeout`` / ``--memory`` / ``--cpu`` flags describe."""
    try:
        return Limits(timeout_s=parse_timeout(timeout), memory_bytes=_memory(memory), cpu=_cpu(cpu))
    except ValidationError as e:
        raise SandboxRequestError(f"bad limit {describe(e)}") from e


def build_request(code: str, language: Language, limits: Limits, origin: str) -> ExecutionRequest:
    """The request to run ``code`` (read from ``origin``, named in errors) with ``limits``."""
    if not code.strip():
        raise SandboxRequestError(f"no code to run: {origin} is empty")
    try:
        return ExecutionRequest(language=language, code=code, limits=limits)
    except ValidationError as e:
        raise SandboxRequestError(f"bad request {describe(e)}") from e
