"""Who is calling: agents authenticate to the gateway, never to Kubernetes.

In a cluster an agent sends its *projected* ServiceAccount token (audience
``agentkube-sandbox-gateway``, see docs/gateway-auth.md) as a Bearer token; the gateway asks the
API server whether it is valid with a TokenReview (:class:`TokenReviewAuthenticator`) and gets the
agent's identity, ``system:serviceaccount:<namespace>:<name>``. The audience makes a token minted
for the gateway useless against the API server, and the API server's own tokens useless here.

On one machine (or for clients outside the cluster) :class:`StaticTokens` maps tokens from a file
to names. :class:`CachingAuthenticator` keeps accepted tokens for a short time so that a busy
agent does not cost one TokenReview per execution; refusals are not cached.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentkube.gateway.errors import GatewayConfigError


@dataclass(frozen=True, kw_only=True)
class Identity:
    """An authenticated caller; ``name`` is what quotas count and logs show."""

    name: str
    groups: tuple[str, ...] = ()


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Identity | None:
        """The caller's identity, or None when the token is not valid."""
        ...


class StaticTokens:
    """Tokens from a file of ``<token> <name>`` lines (``#`` starts a comment)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)

    @classmethod
    def from_file(cls, path: Path) -> StaticTokens:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise GatewayConfigError(f"cannot read the token file {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise GatewayConfigError(
                f"the token file {path} is not UTF-8 text ({e.reason}); save it as UTF-8"
            ) from e
        tokens: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2:
                raise GatewayConfigError(
                    f"{path}:{number}: expected `<token> <name>`, found {len(fields)} fields"
                )
            tokens[fields[0]] = fields[1]
        if not tokens:
            raise GatewayConfigError(f"the token file {path} holds no `<token> <name>` line")
        return cls(tokens)

    async def authenticate(self, token: str) -> Identity | None:
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Identity(name=name)
        return None


class TokenReviewClient(Protocol):
    async def create(self, obj: Any) -> Any: ...


class TokenReviewAuthenticator:
    """Validates tokens with the API server's TokenReview (needs ``create tokenreviews``)."""

    def __init__(self, client: TokenReviewClient, *, audiences: tuple[str, ...]) -> None:
        self._client = client
        self._audiences = list(audiences)

    async def authenticate(self, token: str) -> Identity | None:
        from lightkube.models.authentication_v1 import TokenReviewSpec
        from lightkube.resources.authentication_v1 import TokenReview

        review = TokenReview(spec=TokenReviewSpec(token=token, audiences=self._audiences))
        answer = await self._client.create(review)
        status = answer.status
        if status is None or not status.authenticated or status.user is None:
            return None
        if self._audiences and not set(status.audiences or []) & set(self._audiences):
            return None
        return Identity(name=status.user.username or "", groups=tuple(status.user.groups or ()))


class CachingAuthenticator:
    """Remembers accepted tokens (by hash) for ``ttl_s`` seconds."""

    def __init__(
        self,
        inner: Authenticator,
        *,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._inner = inner
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Identity]] = {}

    async def authenticate(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        identity = await self._inner.authenticate(token)
        if identity is None:
            self._cache.pop(key, None)
            return None
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self._ttl_s, identity)
        return identity
