"""Fixtures for the local sandbox: a real LocalSandbox, and checks that the host was unharmed.

The sandbox needs bubblewrap and writable cgroups. Missing either fails these tests loudly with
the fix; they never skip, so CI cannot pass without actually exercising isolation.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from agentkube.sandbox.local import LocalSandbox
from tests.sandbox.helpers import assert_nothing_left


@pytest.fixture(scope="session", autouse=True)
def _bubblewrap_installed() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap (bwrap) is not installed; the sandbox tests need it: run `make setup-dev` "
            "(scripts/setup.sh installs it) or `apt-get install bubblewrap`",
            pytrace=False,
        )


@pytest.fixture
async def sandbox() -> AsyncIterator[LocalSandbox]:
    backend = LocalSandbox()
    try:
        yield backend
    finally:
        await backend.aclose()
    await assert_nothing_left(backend)
