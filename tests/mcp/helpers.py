"""Starting ``agentkube sandbox mcp`` the way an MCP client does, and reading its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp import StdioServerParameters
from mcp.types import CallToolResult, TextContent


def stdio_params(*flags: str) -> StdioServerParameters:
    """How a desktop client launches the server: a command on stdio."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentkube", "sandbox", "mcp", *flags],
        env=dict(os.environ),
    )


@contextmanager
def http_server(*flags: str) -> Iterator[str]:
    """``agentkube sandbox mcp --http 127.0.0.1:0``; yields the URL it announces."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkube", "sandbox", "mcp", "--http", "127.0.0.1:0", *flags],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if line.startswith("serving MCP at ") or not line:
                break
        assert line.startswith("serving MCP at "), f"the server did not start: {line!r}"
        yield line.removeprefix("serving MCP at ").strip()
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


def structured(result: CallToolResult) -> dict[str, Any]:
    """The execution result a tool call returned (it must not be a tool error)."""
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def as_json(result: CallToolResult) -> dict[str, Any]:
    value = json.loads(text_of(result))
    assert isinstance(value, dict)
    return value
