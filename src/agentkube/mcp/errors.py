"""MCP server errors.

UserError
└── McpConfigError     a bad flag of ``agentkube sandbox mcp`` (the --http address): exit 2

A refused tool call is not an exception here: the server answers it as an MCP tool error
(``isError``), and the sandbox's own errors (:mod:`agentkube.sandbox.errors`) name the cause.
"""

from __future__ import annotations

from agentkube.errors import UserError


class McpConfigError(UserError):
    """The MCP server cannot be started as configured."""
