"""Authenticators: static tokens from a file, and the cache in front of TokenReview."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.gateway.auth import CachingAuthenticator, Identity, StaticTokens
from agentkube.gateway.errors import GatewayConfigError


class CountingTokens(StaticTokens):
    def __init__(self) -> None:
        super().__init__({"good": "agent-a"})
        self.calls = 0

    async def authenticate(self, token: str) -> Identity | None:
        self.calls += 1
        return await super().authenticate(token)


async def test_accepted_tokens_are_cached_until_the_ttl_runs_out() -> None:
    now = [0.0]
    inner = CountingTokens()
    auth = CachingAuthenticator(inner, ttl_s=30, clock=lambda: now[0])
    assert await auth.authenticate("good") == Identity(name="agent-a")
    assert await auth.authenticate("good") == Identity(name="agent-a")
    assert inner.calls == 1
    now[0] = 31
    await auth.authenticate("good")
    assert inner.calls == 2


async def test_refused_tokens_are_not_cached() -> None:
    inner = CountingTokens()
    auth = CachingAuthenticator(inner)
    assert await auth.authenticate("bad") is None
    assert await auth.authenticate("bad") is None
    assert inner.calls == 2


async def test_token_file_maps_tokens_to_names(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# agents\nsecret-1 agent-one\n\nsecret-2 agent-two  # comment\n")
    tokens = StaticTokens.from_file(path)
    assert await tokens.authenticate("secret-2") == Identity(name="agent-two")
    assert await tokens.authenticate("secret-3") is None


def test_malformed_token_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ok name\nonly-one-field\n")
    with pytest.raises(GatewayConfigError, match=r"tokens:2: expected `<token> <name>`"):
        StaticTokens.from_file(path)
