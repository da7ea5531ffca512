"""Sandbox errors.

UserError
└── SandboxRequestError      the request itself is invalid (bad limits, bad path): exit 2
RuntimeFailure
├── SandboxUnavailable       isolation cannot be set up here; refuses to run unisolated
└── SandboxFailure           the sandbox machinery broke while running a request
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class SandboxRequestError(UserError):
    """The execution request is invalid."""


class SandboxUnavailable(RuntimeFailure):
    """The isolation this backend needs is not available on this machine."""


class SandboxFailure(RuntimeFailure):
    """The sandbox machinery failed (not the code it ran)."""
