"""One namespace cannot read another's memory: real Redis ACL users, Chroma tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from agentkube.memory.errors import AccessDenied, CollectionNotFound, InvalidName
from agentkube.memory.state.redis import RedisState
from agentkube.memory.tenancy import (
    delete_redis_user,
    ensure_redis_user,
    key_prefix,
    redis_acl_rules,
    redis_user_namespaces,
)
from agentkube.memory.vectors import VectorStore
from agentkube.memory.vectors.chroma import ChromaServer, EmbeddedChroma
from tests.memory.servers import RedisServer


def user_url(server: RedisServer, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def two_tenants(
    redis_server: RedisServer, admin: aioredis.Redis
) -> AsyncIterator[tuple[RedisState, RedisState]]:
    alice = await ensure_redis_user(admin, "team-alice", "alice-secret")
    bob = await ensure_redis_user(admin, "team-bob", "bob-secret")
    a = RedisState(user_url(redis_server, alice, "alice-secret"), "team-alice")
    b = RedisState(user_url(redis_server, bob, "bob-secret"), "team-bob")
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()
        await delete_redis_user(admin, "team-alice")
        await delete_redis_user(admin, "team-bob")


async def test_each_namespace_user_works_within_its_own_prefix(
    two_tenants: tuple[RedisState, RedisState],
) -> None:
    alice, bob = two_tenants
    await alice.append_turn("planner", "c1", b"alice's turn")
    await alice.set("plan", b"alice's plan")
    await bob.append_turn("planner", "c1", b"bob's turn")
    assert await alice.load_turns("planner", "c1") == [b"alice's turn"]
    assert await bob.load_turns("planner", "c1") == [b"bob's turn"]
    assert await alice.get("plan") == b"alice's plan"
    assert await bob.get("plan") is None


async def test_a_namespace_user_cannot_read_or_write_another_namespaces_keys(
    two_tenants: tuple[RedisState, RedisState],
) -> None:
    alice, bob = two_tenants
    await alice.set("secret", b"alice only")
    alices_key = f"{key_prefix('team-alice')}kv:secret"
    with pytest.raises(redis_errors.NoPermissionError):
        await bob.client.get(alices_key)
    with pytest.raises(redis_errors.NoPermissionError):
        await bob.client.set(alices_key, b"overwritten")
    with pytest.raises(redis_errors.NoPermissionError):
        await bob.client.delete(alices_key)
    assert await alice.get("secret") == b"alice only"


@pytest.mark.parametrize(
    "command",
    [("SCAN", "0"), ("KEYS", "*"), ("RANDOMKEY",), ("DBSIZE",), ("FLUSHALL",),
     ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("MONITOR",),
     ("EVAL", "return redis.call('get', KEYS[1])", "0")],
)  # fmt: skip
async def test_commands_that_reach_beyond_the_prefix_are_denied(
    two_tenants: tuple[RedisState, RedisState], command: tuple[str, ...]
) -> None:
    _, bob = two_tenants
    with pytest.raises(redis_errors.NoPermissionError):
        await bob.client.execute_command(*command)  # type: ignore[no-untyped-call]


async def test_a_denied_operation_is_a_one_line_access_error_naming_the_namespace(
    redis_server: RedisServer, admin: aioredis.Redis
) -> None:
    user = await ensure_redis_user(admin, "team-carol", "carol-secret")
    # carol's credentials, but pretending to be alice's namespace: every key is outside her ACL
    impostor = RedisState(user_url(redis_server, user, "carol-secret"), "team-alice")
    try:
        with pytest.raises(AccessDenied, match="denied namespace 'team-alice'") as raised:
            await impostor.get("secret")
        assert "\n" not in str(raised.value) and "carol-secret" not in str(raised.value)
    finally:
        await impostor.aclose()
        await delete_redis_user(admin, "team-carol")


async def test_a_wrong_password_is_refused_without_echoing_it(
    redis_server: RedisServer, admin: aioredis.Redis
) -> None:
    user = await ensure_redis_user(admin, "team-dave", "dave-secret")
    wrong = RedisState(user_url(redis_server, user, "not-the-password"), "team-dave")
    try:
        with pytest.raises(AccessDenied, match="refused the credentials") as raised:
            await wrong.get("x")
        assert "not-the-password" not in str(raised.value)
    finally:
        await wrong.aclose()
        await delete_redis_user(admin, "team-dave")


async def test_updating_a_namespace_user_replaces_its_password(
    redis_server: RedisServer, admin: aioredis.Redis
) -> None:
    user = await ensure_redis_user(admin, "team-erin", "old-secret")
    await ensure_redis_user(admin, "team-erin", "new-secret")
    old = RedisState(user_url(redis_server, user, "old-secret"), "team-erin")
    new = RedisState(user_url(redis_server, user, "new-secret"), "team-erin")
    try:
        with pytest.raises(AccessDenied):
            await old.get("x")
        assert await new.get("x") is None
    finally:
        await old.aclose()
        await new.aclose()
        await delete_redis_user(admin, "team-erin")


async def test_namespace_users_survive_a_restart_when_the_server_has_an_acl_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "users.acl").touch()
    server = RedisServer(tmp_path, "--aclfile", str(tmp_path / "users.acl"))
    server.start()
    try:
        admin = aioredis.from_url(server.url)
        try:
            user = await ensure_redis_user(admin, "team-frank", "frank-secret")
        finally:
            await admin.aclose()
        server.stop()
        server.start()
        store = RedisState(user_url(server, user, "frank-secret"), "team-frank")
        try:
            await store.set("still", b"here")
            assert await store.get("still") == b"here"
        finally:
            await store.aclose()
    finally:
        server.stop()


async def test_only_the_users_ensure_made_are_listed_as_namespace_users(
    admin: aioredis.Redis,
) -> None:
    await ensure_redis_user(admin, "team-gina", "gina-secret")
    await ensure_redis_user(admin, "agentkube-hank", "hank-secret")  # user agentkube-agentkube-hank
    # Named like namespace users, but not confined to one namespace's keys: never taken for one.
    await admin.acl_setuser("agentkube-ops", enabled=True, nopass=True, keys=["*"])
    await admin.acl_setuser("agentkube-team-ivy", enabled=True, nopass=True, keys=["agentkube:*"])
    await admin.acl_setuser("agentkube-Bad", enabled=True, nopass=True, keys=["agentkube:Bad:*"])
    try:
        listed = await redis_user_namespaces(admin)
        assert "team-gina" in listed and "agentkube-hank" in listed
        assert not {"ops", "team-ivy", "Bad", "default"} & set(listed)
        assert await delete_redis_user(admin, "team-gina") is True
        assert await delete_redis_user(admin, "team-gina") is False  # already gone is fine
        assert "team-gina" not in await redis_user_namespaces(admin)
    finally:
        await delete_redis_user(admin, "agentkube-hank")
        for user in ("agentkube-ops", "agentkube-team-ivy", "agentkube-Bad"):
            await admin.acl_deluser(user)


@pytest.mark.parametrize("bad", ["Team", "a*", "a:b", "-a", "", "x" * 64, "a b"])
def test_a_namespace_that_is_not_a_dns_label_never_reaches_an_acl_rule(bad: str) -> None:
    with pytest.raises(InvalidName, match="DNS-1123"):
        redis_acl_rules(bad, "pw")


def test_the_acl_rules_carry_only_the_password_hash() -> None:
    rules = redis_acl_rules("team-a", "hunter2")
    assert "~agentkube:team-a:*" in rules and "&agentkube:team-a:*" in rules
    assert not any("hunter2" in rule for rule in rules)


def other_namespace(store: VectorStore, namespace: str) -> VectorStore:
    if isinstance(store, EmbeddedChroma):
        return EmbeddedChroma(store.path, namespace)
    assert isinstance(store, ChromaServer)
    return ChromaServer(store.location, namespace)


async def test_a_collection_is_invisible_from_another_namespace(vector_store: VectorStore) -> None:
    await vector_store.open_collection("shared-name", "test:2", 2)
    await vector_store.upsert(
        "shared-name", ["a"], np.asarray([[1.0, 0.0]], np.float32), ["mine"], [{"source": "a"}]
    )
    neighbour = other_namespace(vector_store, "someone-else")
    try:
        assert await neighbour.list_collections() == []
        with pytest.raises(CollectionNotFound, match="shared-name"):
            await neighbour.describe("shared-name")
        await neighbour.open_collection("shared-name", "test:2", 2)  # their own, same name
        assert (await neighbour.describe("shared-name")).chunks == 0
    finally:
        await neighbour.delete_collection("shared-name")
        await neighbour.aclose()
    assert (await vector_store.describe("shared-name")).chunks == 1
