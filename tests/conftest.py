"""Shared pytest set-up: fixtures that start real components live in tests/plugins/."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

pytest_plugins: list[str] = [
    "tests.plugins.redis",
    "tests.plugins.chroma",
    "tests.plugins.sandbox",
    "tests.plugins.testcluster",
    "tests.plugins.project_image",
]


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage when a test ends, so that a socket or transport a test left open is
    reported (an unraisable ResourceWarning, an error here) against that test, not whichever
    later test the collector happens to run in."""
    yield
    gc.collect()
