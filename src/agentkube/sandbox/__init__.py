"""Isolated, ephemeral execution of untrusted code: one contract, several backends."""

from agentkube.sandbox.contract import (
    ExecutionRequest,
    ExecutionResult,
    KilledReason,
    Language,
    Limits,
    Sandbox,
)
from agentkube.sandbox.errors import SandboxFailure, SandboxRequestError, SandboxUnavailable

__all__ = [
    "ExecutionRequest",
    "ExecutionResult",
    "KilledReason",
    "Language",
    "Limits",
    "Sandbox",
    "SandboxFailure",
    "SandboxRequestError",
    "SandboxUnavailable",
]
