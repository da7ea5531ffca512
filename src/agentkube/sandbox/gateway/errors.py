"""Sandbox gateway errors (the HTTP layer in front of a sandbox backend).

UserError
└── GatewayConfigError        a bad gateway flag or token file: one line, exit 2
SandboxFailure (agentkube.sandbox.errors)
└── SandboxBusy               the agent's concurrency quota is used up (HTTP 429); retry later
SandboxUnavailable (agentkube.sandbox.errors)
└── GatewayRefused            the gateway refused the agent's credentials (HTTP 401/403)

The server maps these to HTTP statuses (:mod:`agentkube.sandbox.gateway.app`); the client
(:mod:`agentkube.sandbox.remote`) maps the statuses back, so an agent sees the same exception
whether its sandbox is local or behind the gateway.
"""

from __future__ import annotations

from agentkube.errors import UserError
from agentkube.sandbox.errors import SandboxFailure, SandboxUnavailable


class GatewayConfigError(UserError):
    """The gateway's configuration (flags, token file) is invalid."""


class SandboxBusy(SandboxFailure):
    """The agent already runs as many executions as its quota allows."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GatewayRefused(SandboxUnavailable):
    """The gateway did not accept the agent's credentials."""
