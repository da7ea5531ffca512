"""Sandbox errors: what any backend, local or behind the gateway, raises to its caller.

UserError
└── SandboxRequestError      the request itself is invalid (bad limits, bad path): exit 2
RuntimeFailure
├── SandboxUnavailable       isolation cannot be set up here; refuses to run unisolated
│   └── SandboxRefused       the gateway refused the caller's credentials (HTTP 401/403)
└── SandboxFailure           the sandbox machinery broke while running a request
    └── SandboxBusy          the caller's concurrency quota is used up (HTTP 429); retry later

The gateway maps these to HTTP statuses (:mod:`agentkube.gateway.app`) and its client
(:mod:`agentkube.gateway.client`) maps the statuses back, so an agent sees the same exception
whether its sandbox is local or behind the gateway.
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class SandboxRequestError(UserError):
    """The execution request is invalid."""


class SandboxUnavailable(RuntimeFailure):
    """The isolation this backend needs is not available on this machine."""


class SandboxRefused(SandboxUnavailable):
    """The sandbox gateway did not accept the caller's credentials."""


class SandboxFailure(RuntimeFailure):
    """The sandbox machinery failed (not the code it ran)."""


class SandboxBusy(SandboxFailure):
    """The caller already runs as many executions as its quota allows."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
