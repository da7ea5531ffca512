"""Every local sandbox test needs bubblewrap; the `sandbox` fixture lives in tests/plugins/."""

from __future__ import annotations

import pytest

from tests.plugins.sandbox import require_bubblewrap


@pytest.fixture(scope="session", autouse=True)
def _bubblewrap_installed() -> None:
    require_bubblewrap()
