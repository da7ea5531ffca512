"""Sandbox gateway errors (the server's own; what callers see is in agentkube.sandbox.errors).

UserError
└── GatewayConfigError        a bad gateway flag or token file: one line, exit 2
"""

from __future__ import annotations

from agentkube.errors import UserError


class GatewayConfigError(UserError):
    """The gateway's configuration (flags, token file) is invalid."""
