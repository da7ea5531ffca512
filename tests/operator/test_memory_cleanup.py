"""A gone namespace's Redis user is removed, and a live one never is: the Controller's events and
the sweep over the Reconciler + NamespaceMemory, against a real ``redis-server`` whose users live
in an ACL file as deploy/memory's do. The API server's stand-in is the recording writer of
test_memory_access.py, with reads and lists over what it holds; the same path runs on the real
API server in test_memory_cluster.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import RejectedByApi
from agentkube.operator.handlers import Controller
from agentkube.operator.memory import SECRET_NAME, URL_KEY
from agentkube.operator.memory_access import NamespaceMemory
from agentkube.operator.memory_cleanup import OrphanedUsers
from agentkube.operator.queueing import ReconcileQueue
from agentkube.operator.reconciling import Reconciler
from tests.memory.servers import RedisServer
from tests.operator.conftest import agent
from tests.operator.test_memory_access import RecordingApi, admin_secret
from tests.plugins.redis import ADMIN_PASSWORD

JSON = dict[str, Any]


class ListingApi(RecordingApi):
    """The recording API, also answering "any Agent in this namespace?" from what it holds;
    ``delete`` takes an object away, as the API server would."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = 0
        self.asked: list[str] = []  # the namespaces of the lists and reads
        self.forbidden: set[str] = set()  # namespaces whose Agents the operator may not list

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        self.asked.append(namespace)
        return await super().read(kind, namespace, name)

    async def any_in(self, kind: str, namespace: str) -> bool:
        self.lists += 1
        self.asked.append(namespace)
        if namespace in self.forbidden:
            raise RejectedByApi(f"list {kind} in {namespace}: forbidden")
        return any(k == kind and ns == namespace for k, ns, _ in self.objects)

    def take_away(self, kind: str, namespace: str, name: str) -> JSON:
        return self.objects.pop((kind, namespace, name))


@pytest.fixture(scope="module")
def redis_with_acl_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server whose users are kept in an ACL file (the admin user written into it as
    deploy/memory's init container does), so they survive a restart."""
    directory = tmp_path_factory.mktemp("redis-acl")
    digest = hashlib.sha256(ADMIN_PASSWORD.encode()).hexdigest()
    (directory / "users.acl").write_text(f"user default on #{digest} ~* &* +@all\n")
    server = RedisServer(directory, "--aclfile", str(directory / "users.acl"))
    server.start()
    yield server
    server.stop()


@dataclass
class Operator:
    """The operator's parts this file drives: what Operator.__post_init__ wires."""

    reconciler: Reconciler
    memory: NamespaceMemory
    orphans: OrphanedUsers
    controller: Controller
    cache: Cache
    api: ListingApi

    def restarted(self) -> Operator:
        """A new operator (empty cache, nothing remembered) over the same API and Redis."""
        return make_operator(self.memory.server.url, self.api)

    async def add_agent(self, namespace: str, name: str = "research-agent") -> None:
        """An Agent created: on the API server, seen by the watch, reconciled; and the
        Secret the reconcile wrote seen by its watch."""
        body = agent(name=name).model_dump(by_alias=True, exclude_none=True, mode="json")
        body["metadata"].update(namespace=namespace, resourceVersion="1")
        self.api.objects["Agent", namespace, name] = body
        await self.controller.on_owner("Agent", {"type": "ADDED", "object": body})
        self.cache.observe(self.api.objects["Secret", namespace, SECRET_NAME], "Secret")

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        body = self.api.take_away(kind, namespace, name)
        handle = self.controller.on_owner if kind == "Agent" else self.controller.on_shared
        await handle(kind, {"type": "DELETED", "object": body})

    def url(self, namespace: str) -> str:
        secret = self.api.objects["Secret", namespace, SECRET_NAME]
        return base64.b64decode(secret["data"][URL_KEY]).decode()

    async def close(self) -> None:
        await self.controller.stop()
        await self.memory.aclose()


def make_operator(url: str, api: ListingApi) -> Operator:
    config = OperatorConfig.model_validate(
        {"defaultEndpoint": {"url": "http://models.example/v1"}, "memory": {"redis": {"url": url}}}
    )
    assert config.memory is not None and config.memory.redis is not None
    cache = Cache()
    memory = NamespaceMemory(config.memory.redis, cache=cache, api=api)
    orphans = OrphanedUsers(memory, cache, api)
    reconciler = Reconciler(cache=cache, applier=api, config=config, memory=memory)
    queue = ReconcileQueue(
        lambda ref: reconciler.reconcile(*ref),
        concurrency=4,
        retry_seconds=60,
        max_retry_seconds=60,
    )
    controller = Controller(cache, queue, resync_seconds=3600, released=orphans.released)
    return Operator(reconciler, memory, orphans, controller, cache, api)


@pytest.fixture
async def operator(redis_with_acl_file: RedisServer) -> AsyncIterator[Operator]:
    api = ListingApi()
    api.objects["Secret", "agentkube-memory", "agentkube-redis"] = admin_secret()
    made = make_operator(redis_with_acl_file.url, api)
    yield made
    await made.close()
    admin = await admin_connection(redis_with_acl_file)
    for user in await admin.acl_users():
        name = user.decode() if isinstance(user, bytes) else str(user)
        if name != "default":
            await admin.acl_deluser(name)
    await admin.aclose()


async def admin_connection(server: RedisServer) -> aioredis.Redis:
    return aioredis.from_url(server.url, password=ADMIN_PASSWORD)


async def users(server: RedisServer) -> set[str]:
    admin = await admin_connection(server)
    try:
        return {u.decode() if isinstance(u, bytes) else str(u) for u in await admin.acl_users()}
    finally:
        await admin.aclose()


async def logs_in(url: str, namespace: str) -> bool:
    """Whether ``url``'s credentials still log in (and write one of the namespace's keys)."""
    try:
        return await _logs_in_once(url, namespace)
    except redis_errors.ConnectionError:  # the server closed it: the user was just removed
        return await _logs_in_once(url, namespace)


async def _logs_in_once(url: str, namespace: str) -> bool:
    client = aioredis.from_url(url)
    try:
        await client.set(f"agentkube:{namespace}:kv:x", b"1")
        return True
    except redis_errors.AuthenticationError:
        return False
    finally:
        await client.aclose()


async def test_the_user_goes_with_the_last_agent_and_the_secret_and_never_comes_back(
    operator: Operator, redis_with_acl_file: RedisServer
) -> None:
    await operator.add_agent("team-a", "planner")
    await operator.add_agent("team-a", "executor")
    url = operator.url("team-a")
    assert "agentkube-team-a" in await users(redis_with_acl_file) and await logs_in(url, "team-a")
    await operator.delete("Agent", "team-a", "planner")
    await operator.delete("Agent", "team-a", "executor")  # the namespace's Secret still there
    assert await operator.orphans.release_pending() == []
    assert await logs_in(url, "team-a")
    await operator.delete("Secret", "team-a", SECRET_NAME)  # as a deleted namespace takes it
    assert await operator.orphans.release_pending() == ["team-a"]
    assert "agentkube-team-a" not in await users(redis_with_acl_file)
    assert not await logs_in(url, "team-a")
    acl_file = (redis_with_acl_file.directory / "users.acl").read_text()
    assert "user default " in acl_file and "agentkube-team-a" not in acl_file  # lasts a restart
    # A namespace made again under that name gets a new password, not the old one.
    await operator.add_agent("team-a", "planner")
    assert operator.url("team-a") != url and not await logs_in(url, "team-a")
    assert await logs_in(operator.url("team-a"), "team-a")
    admin = await admin_connection(redis_with_acl_file)
    assert await admin.get("agentkube:team-a:kv:x") == b"1"  # the keys stayed
    await admin.aclose()


async def test_a_secret_deleted_by_hand_while_an_agent_runs_keeps_the_user_and_password(
    operator: Operator,
) -> None:
    await operator.add_agent("team-b")
    url = operator.url("team-b")
    await operator.delete("Secret", "team-b", SECRET_NAME)
    assert await operator.orphans.release_pending() == []
    assert await operator.orphans.sweep() == []
    assert await logs_in(url, "team-b")
    # The Agent's reconcile (which the Secret's event asked for) makes it again, same password.
    assert await operator.reconciler.reconcile("Agent", "team-b", "research-agent") is False
    assert operator.url("team-b") == url and await logs_in(url, "team-b")


async def test_a_restarted_operator_removes_an_orphan_but_no_user_its_cache_has_not_seen_yet(
    operator: Operator, redis_with_acl_file: RedisServer
) -> None:
    for namespace in ("team-live", "team-gone"):
        await operator.add_agent(namespace)
    live, gone = operator.url("team-live"), operator.url("team-gone")
    await operator.close()
    # While the operator was down, team-gone was deleted (its Agent and Secret with it).
    operator.api.take_away("Agent", "team-gone", "research-agent")
    operator.api.take_away("Secret", "team-gone", SECRET_NAME)
    restarted = operator.restarted()
    try:
        # Its watches have listed nothing yet: team-live is unknown to the cache, and the API
        # server's answer (an Agent there) is what keeps its user.
        assert restarted.cache.count("Agent") == 0
        assert await restarted.orphans.sweep() == ["team-gone"]
        assert await logs_in(live, "team-live") and not await logs_in(gone, "team-gone")
        assert restarted.api.lists == 2
        # Once the watches have listed, a sweep asks the API server nothing about namespaces
        # (only the admin password, as every admin connection does).
        for kind, namespace, name in list(restarted.api.objects):
            if namespace == "team-live":
                restarted.cache.observe(restarted.api.objects[kind, namespace, name], kind)
        restarted.api.asked.clear()
        assert await restarted.orphans.sweep() == []
        assert restarted.api.asked == ["agentkube-memory"]
        assert await logs_in(live, "team-live")
    finally:
        await restarted.close()


async def test_removing_one_namespaces_user_leaves_anothers_working_and_connected(
    operator: Operator,
) -> None:
    await operator.add_agent("team-c")
    await operator.add_agent("team-d")
    connected = aioredis.from_url(operator.url("team-d"))
    await connected.set("agentkube:team-d:kv:y", b"2")
    await operator.delete("Agent", "team-c", "research-agent")
    await operator.delete("Secret", "team-c", SECRET_NAME)
    assert await operator.orphans.release_pending() == ["team-c"]
    assert await connected.get("agentkube:team-d:kv:y") == b"2"  # the same connection
    await connected.aclose()
    assert await logs_in(operator.url("team-d"), "team-d")


async def test_users_the_operator_did_not_make_or_does_not_watch_are_left_alone(
    operator: Operator, redis_with_acl_file: RedisServer
) -> None:
    admin = await admin_connection(redis_with_acl_file)
    # Named like a namespace user, but not confined to one namespace's keys.
    await admin.acl_setuser("agentkube-monitoring", enabled=True, nopass=True, keys=["*"])
    await admin.aclose()
    operator.orphans.namespaces = frozenset({"team-e"})  # a namespaced install watching team-e
    for namespace in ("team-e", "team-f"):
        await operator.add_agent(namespace)
        await operator.delete("Agent", namespace, "research-agent")
        await operator.delete("Secret", namespace, SECRET_NAME)
    assert await operator.orphans.release_pending() == ["team-e"]
    assert await operator.orphans.sweep() == []
    assert {"agentkube-monitoring", "agentkube-team-f", "default"} <= await users(
        redis_with_acl_file
    )


async def test_a_namespace_the_api_server_refuses_to_answer_for_keeps_its_user_and_no_other(
    operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    urls = {}
    for namespace in ("team-j", "team-k"):
        await operator.add_agent(namespace)
        urls[namespace] = operator.url(namespace)
        await operator.delete("Agent", namespace, "research-agent")
        operator.api.take_away("Secret", namespace, SECRET_NAME)  # with no event seen
        operator.cache.forget("Secret", namespace, SECRET_NAME)
    operator.api.forbidden.add("team-j")
    with caplog.at_level(logging.WARNING, "agentkube.operator.memory_cleanup"):
        assert await operator.orphans.sweep() == ["team-k"]
    assert "Redis user agentkube-team-j not removed yet (list Agent in team-j: forbidden)" in (
        caplog.text
    )
    assert await logs_in(urls["team-j"], "team-j") and not await logs_in(urls["team-k"], "team-k")


async def test_redis_down_during_a_removal_is_one_line_and_the_sweep_removes_it_later(
    operator: Operator, redis_with_acl_file: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await operator.add_agent("team-g")
    url = operator.url("team-g")
    await operator.delete("Agent", "team-g", "research-agent")
    redis_with_acl_file.kill()
    try:
        with caplog.at_level(logging.WARNING, "agentkube.operator.memory_cleanup"):
            await operator.delete("Secret", "team-g", SECRET_NAME)
            assert await operator.orphans.release_pending() == []
            assert await operator.orphans.sweep() == []
    finally:
        redis_with_acl_file.start()
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("memory_cleanup")]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "Redis user agentkube-team-g not removed yet" in lines[0]
    assert f"127.0.0.1:{redis_with_acl_file.port}/0 is unavailable" in lines[0]
    assert lines[1].startswith("unused Redis users not removed yet")
    assert await logs_in(url, "team-g")  # the user outlived the kill (ACL file)
    assert await operator.orphans.sweep() == ["team-g"]
    assert not await logs_in(url, "team-g")


async def eventually_refused(url: str, namespace: str, within_s: float) -> float:
    """Seconds until ``url``'s credentials are refused; fails after ``within_s``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await logs_in(url, namespace):
        assert loop.time() - started < within_s, f"{namespace}'s user still works"
        await asyncio.sleep(0.05)
    return loop.time() - started


async def test_a_running_cleanup_removes_a_released_user_at_once_and_an_orphan_at_its_sweep(
    operator: Operator,
) -> None:
    await operator.add_agent("team-h")
    await operator.add_agent("team-i")
    urls = {ns: operator.url(ns) for ns in ("team-h", "team-i")}
    # team-i goes with no event reaching this operator (as if deleted while it was down).
    operator.api.take_away("Agent", "team-i", "research-agent")
    operator.api.take_away("Secret", "team-i", SECRET_NAME)
    operator.cache.forget("Agent", "team-i", "research-agent")
    operator.cache.forget("Secret", "team-i", SECRET_NAME)
    operator.orphans.interval_s = 60.0
    async with operator.orphans.running(()):
        await operator.delete("Agent", "team-h", "research-agent")
        await operator.delete("Secret", "team-h", SECRET_NAME)
        assert await eventually_refused(urls["team-h"], "team-h", within_s=2.0) < 2.0
        assert await logs_in(urls["team-i"], "team-i")  # no sweep yet
    operator.orphans.interval_s = 0.3
    async with operator.orphans.running(()):
        assert await eventually_refused(urls["team-i"], "team-i", within_s=5.0) >= 0.2
