"""The sandbox MCP server runs the local sandbox, which needs bubblewrap."""

from __future__ import annotations

import pytest

from tests.plugins.sandbox import require_bubblewrap


@pytest.fixture(scope="session", autouse=True)
def _bubblewrap_installed() -> None:
    require_bubblewrap()
