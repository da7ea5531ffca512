"""Tenants are Kubernetes namespaces: one namespace's agents never see another's memory.

* **Redis**: every key of namespace ``ns`` starts with ``agentkube:ns:``; the operator gives each
  namespace its own ACL user (:func:`ensure_redis_user`) whose key and channel patterns are that
  prefix only and whose commands exclude the ones that would reveal other keys (``SCAN``,
  ``KEYS``, ``RANDOMKEY``, ``DBSIZE``), scripting, admin and dangerous commands. Key prefixes keep
  honest clients apart; the ACL stops the dishonest ones.
* **Chroma**: each namespace is its own tenant (``agentkube-ns``) with one database; collection
  names never cross it. Chroma's open-source server has no per-tenant authentication, so in a
  cluster the NetworkPolicy of ``deploy/memory`` (only agent pods) is what keeps others out.

Namespaces are validated as DNS-1123 labels before they reach an ACL rule, so a name can never
smuggle a glob (``*``) into a key pattern.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from agentkube.memory.errors import InvalidName

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_NAMESPACE = "default"
KEY_ROOT = "agentkube"
CHROMA_DATABASE = "agentkube"
USER_PREFIX = f"{KEY_ROOT}-"  # namespace users are agentkube-<namespace>
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# Categories a namespace user may use, then the commands inside them it may not: those that
# list or count keys regardless of the key patterns.
_ALLOWED = ("+@read", "+@write", "+@transaction", "+@connection", "+@fast", "+@slow")
_DENIED = (
    "-@dangerous",
    "-@admin",
    "-@scripting",
    "-@pubsub",
    "-scan",
    "-keys",
    "-randomkey",
    "-dbsize",
    "-client",  # redis-py's CLIENT SETINFO on connect may fail; the client ignores that
)


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a DNS-1123 label, else :class:`InvalidName`."""
    if not _LABEL.fullmatch(namespace):
        raise InvalidName(
            f"namespace {namespace!r} is not a DNS-1123 label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    return namespace


def key_prefix(namespace: str) -> str:
    """The prefix every Redis key of ``namespace`` starts with."""
    return f"{KEY_ROOT}:{check_namespace(namespace)}:"


def chroma_tenant(namespace: str) -> str:
    """The Chroma tenant holding ``namespace``'s collections."""
    return f"{KEY_ROOT}-{check_namespace(namespace)}"


def redis_username(namespace: str) -> str:
    return f"{USER_PREFIX}{check_namespace(namespace)}"


def namespace_url(url: str, namespace: str, password: str) -> str:
    """``url`` (a server without credentials) with the credentials of ``namespace``'s user."""
    parts = urlsplit(url)
    if "@" in parts.netloc:  # never echo a credential back
        raise InvalidName(
            "the Redis server URL must not hold credentials: give redis://HOST[:PORT]"
        )
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InvalidName(f"Redis URL {url!r} must look like redis://HOST[:PORT][/DB]")
    user = quote(redis_username(namespace), safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{parts.netloc}"))


def redis_acl_rules(namespace: str, password: str) -> list[str]:
    """The ``ACL SETUSER`` rules of ``namespace``'s user, from a clean slate (``reset``).

    The password is given as its SHA-256 (``#…``) so it never appears in the server's logs.
    """
    prefix = key_prefix(namespace)
    digest = hashlib.sha256(password.encode()).hexdigest()
    return [
        "reset",
        "on",
        f"#{digest}",
        f"~{prefix}*",
        f"&{prefix}*",
        "-@all",
        *_ALLOWED,
        *_DENIED,
    ]


async def ensure_redis_user(admin: Redis, namespace: str, password: str) -> str:
    """Create or update ``namespace``'s Redis ACL user; return its name.

    ``admin`` must be a connection allowed to run ``ACL SETUSER`` (the operator's). Idempotent:
    the rules are rewritten from ``reset`` each time, so a changed password or rule set applies.
    """
    if not password:
        raise InvalidName(f"the Redis password for namespace {namespace!r} must not be empty")
    user = redis_username(namespace)
    rules = redis_acl_rules(namespace, password)
    await admin.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
    await _save_acl(admin)
    return user


async def _save_acl(admin: Redis) -> None:
    """Persist users to the server's ACL file (deploy/memory has one), so they survive restarts.

    A server without an ACL file keeps users in memory only; that is not an error here.
    """
    from redis.exceptions import ResponseError

    try:
        await admin.execute_command("ACL", "SAVE")  # type: ignore[no-untyped-call]
    except ResponseError as e:
        if "not configured to use an ACL file" not in str(e):
            raise


async def delete_redis_user(admin: Redis, namespace: str) -> bool:
    """Remove ``namespace``'s ACL user (its keys stay until deleted separately); whether there
    was one. Connections logged in as that user are closed by the server."""
    user = redis_username(namespace)
    deleted = await admin.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
    await _save_acl(admin)
    return bool(deleted)


def user_namespace(rule: str | bytes) -> str | None:
    """The namespace whose user a line of ``ACL LIST`` describes, if :func:`ensure_redis_user`
    made it: named ``agentkube-<ns>`` and confined to exactly that namespace's keys. Anything
    else (the admin user, a user someone else named with the prefix) is None, never removed."""
    words = (rule.decode() if isinstance(rule, bytes) else rule).split()
    if len(words) < 2 or words[0] != "user" or not words[1].startswith(USER_PREFIX):
        return None
    namespace = words[1].removeprefix(USER_PREFIX)
    if not _LABEL.fullmatch(namespace):
        return None
    keys = [w for w in words if w.startswith("~") or w.startswith("%")]
    return namespace if keys == [f"~{key_prefix(namespace)}*"] else None


async def redis_user_namespaces(admin: Redis) -> list[str]:
    """The namespaces with a user :func:`ensure_redis_user` made (:func:`user_namespace`)."""
    rules = await admin.execute_command("ACL", "LIST")  # type: ignore[no-untyped-call]
    return sorted(ns for ns in map(user_namespace, rules) if ns is not None)
