"""Fixtures: a real gateway on loopback (uvicorn) in front of the real local sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agentkube.sandbox.gateway.app import GatewaySettings, create_app
from agentkube.sandbox.gateway.auth import StaticTokens
from tests.standins.serving import serve

TOKENS = {"token-of-agent-a": "agent-a", "token-of-agent-b": "agent-b"}


@dataclass(frozen=True)
class Gateway:
    url: str


@pytest.fixture
def local_gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway serving the local backend, tokens from TOKENS; indirect param: the quota."""
    from agentkube.sandbox.local import LocalSandbox

    quota = getattr(request, "param", 4)
    app = create_app(
        LocalSandbox(),
        StaticTokens(TOKENS),
        GatewaySettings(max_concurrent_per_agent=quota),
    )
    with serve(app) as url:
        yield Gateway(url)
        # Let the server see the clients' closed connections before it stops, so no socket
        # transport is left half-closed when its loop ends.
        time.sleep(0.2)
