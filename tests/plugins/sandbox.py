"""The `sandbox` fixture: a real LocalSandbox, checked afterwards for anything left behind.

The sandbox needs bubblewrap and writable cgroups. Missing either fails the tests that use it
loudly, with the fix; they never skip, so CI cannot pass without actually exercising isolation.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from agentkube.sandbox.local import LocalSandbox
from tests.sandbox.helpers import assert_nothing_left


def require_bubblewrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap (bwrap) is not installed; the sandbox tests need it: run `make setup-dev` "
            "(scripts/setup.sh installs it) or `apt-get install bubblewrap`",
            pytrace=False,
        )


@pytest.fixture
async def sandbox() -> AsyncIterator[LocalSandbox]:
    require_bubblewrap()
    backend = LocalSandbox()
    try:
        yield backend
    finally:
        await backend.aclose()
    await assert_nothing_left(backend)
