"""A namespace's memory credentials without a cluster: the Reconciler + NamespaceMemory over a
recording writer (the API server's stand-in of test_reconcile_core.py, with reads) and a real
``redis-server`` with an admin password. The same path runs on the real API server in
test_memory_cluster.py."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from agentkube.memory.tenancy import delete_redis_user
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.memory import SECRET_NAME, URL_KEY, secret_password
from agentkube.operator.memory_access import NamespaceMemory
from agentkube.operator.reconciling import Reconciler
from tests.memory.servers import RedisServer
from tests.operator.conftest import agent
from tests.operator.test_reconcile_core import RecordingWriter
from tests.plugins.redis import ADMIN_PASSWORD

JSON = dict[str, Any]


class RecordingApi(RecordingWriter):
    """The recording writer, also answering reads from what was applied (or seeded)."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.reads = 0

    async def apply(self, obj: JSON) -> JSON:
        live = await super().apply(obj)
        meta = obj["metadata"]
        self.objects[obj["kind"], meta["namespace"], meta["name"]] = live
        return live

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        self.reads += 1
        return self.objects.get((kind, namespace, name))


def admin_secret() -> JSON:
    encoded = base64.b64encode(ADMIN_PASSWORD.encode()).decode()
    return {
        "kind": "Secret",
        "metadata": {"name": "agentkube-redis", "namespace": "agentkube-memory"},
        "data": {"password": encoded},
    }


Setup = tuple[Reconciler, NamespaceMemory, Cache, RecordingApi]


def with_memory(redis_port: int, api: RecordingApi) -> tuple[Reconciler, NamespaceMemory, Cache]:
    """A Reconciler with the shared memory of the Redis on ``redis_port`` (its admin password in
    the admin Secret ``api`` serves), over ``api``."""
    config = OperatorConfig.model_validate(
        {
            "defaultEndpoint": {"url": "http://models.example/v1"},
            "memory": {"redis": {"url": f"redis://127.0.0.1:{redis_port}/0"}},
        }
    )
    assert config.memory is not None and config.memory.redis is not None
    cache = Cache()
    api.objects["Secret", "agentkube-memory", "agentkube-redis"] = admin_secret()
    memory = NamespaceMemory(config.memory.redis, cache=cache, api=api)
    return Reconciler(cache=cache, applier=api, config=config, memory=memory), memory, cache


@pytest.fixture
async def setup(redis_with_admin_password: RedisServer) -> AsyncIterator[Setup]:
    api = RecordingApi()
    reconciler, memory, cache = with_memory(redis_with_admin_password.port, api)
    yield reconciler, memory, cache, api
    await memory.aclose()
    admin = aioredis.from_url(redis_with_admin_password.url, password=ADMIN_PASSWORD)
    for user in await admin.acl_users():
        name = user.decode() if isinstance(user, bytes) else str(user)
        if name.startswith("agentkube-"):
            await delete_redis_user(admin, name.removeprefix("agentkube-"))
    await admin.aclose()


def add_agent(cache: Cache, namespace: str, name: str = "research-agent") -> None:
    body = agent(name=name).model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"].update(namespace=namespace, resourceVersion="1")
    cache.put(body, "Agent")


def condition(api: RecordingApi, type_: str) -> JSON:
    conditions = api.statuses[-1]["conditions"]
    found: JSON = next(c for c in conditions if c["type"] == type_)
    return found


async def test_the_namespace_gets_a_secret_and_a_user_that_works_and_nothing_is_rewritten(
    setup: Setup, redis_with_admin_password: RedisServer
) -> None:
    reconciler, _, cache, api = setup
    add_agent(cache, "team-a")
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    assert condition(api, "MemoryReady")["status"] == "True"
    secret = cache.get("Secret", "team-a", SECRET_NAME)
    assert secret is not None and api.writes["apply Secret"] == 1
    url = base64.b64decode(secret["data"][URL_KEY]).decode()
    assert url.startswith(f"redis://agentkube-team-a:{secret_password(secret)}@127.0.0.1:")
    user = aioredis.from_url(url)
    await user.set("agentkube:team-a:kv:x", b"1")
    with pytest.raises(redis_errors.NoPermissionError):
        await user.get("agentkube:team-b:kv:x")
    await user.aclose()
    writes, reads = sum(api.writes.values()), api.reads
    for _ in range(3):
        assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    assert sum(api.writes.values()) == writes and api.reads == reads  # not even a read


async def test_an_existing_password_is_kept_never_regenerated(setup: Setup) -> None:
    reconciler, _, cache, api = setup
    add_agent(cache, "team-a")
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    first = secret_password(cache.get("Secret", "team-a", SECRET_NAME))
    cache.remove("Secret", "team-a", SECRET_NAME)  # as after an operator restart
    fresh = NamespaceMemory(reconciler.memory.server, cache=cache, api=api)  # type: ignore[union-attr]
    assert (await fresh.ensure("team-a")).ok
    await fresh.aclose()
    assert secret_password(cache.get("Secret", "team-a", SECRET_NAME)) == first
    assert api.writes["apply Secret"] == 1  # read back, not rewritten


async def test_agents_of_one_namespace_reconciled_at_once_share_one_password(
    setup: Setup,
) -> None:
    reconciler, _, cache, api = setup
    names = [f"agent-{i}" for i in range(6)]
    for name in names:
        add_agent(cache, "team-c", name)
    await asyncio.gather(*(reconciler.reconcile("Agent", "team-c", n) for n in names))
    assert api.writes["apply Secret"] == 1


async def test_a_redis_that_is_down_is_a_condition_naming_it_and_a_retry(
    setup: Setup, tmp_path: Path
) -> None:
    reconciler, memory, cache, api = setup
    down = RedisServer(tmp_path)  # a free port nobody listens on
    memory.server = memory.server.model_copy(update={"url": f"redis://127.0.0.1:{down.port}/0"})
    add_agent(cache, "team-d")
    assert await reconciler.reconcile("Agent", "team-d", "research-agent") is True
    memory_ready, ready = condition(api, "MemoryReady"), condition(api, "Ready")
    assert (memory_ready["status"], memory_ready["reason"]) == ("False", "RedisUnavailable")
    message = memory_ready["message"]
    assert f"Redis at redis://127.0.0.1:{down.port}/0 is unavailable" in message
    assert "\n" not in message and ready["reason"] == "RedisUnavailable"
    assert "apply Deployment" in api.writes  # the agent runs all the same
    statuses = len(api.statuses)
    assert await reconciler.reconcile("Agent", "team-d", "research-agent") is True
    assert len(api.statuses) == statuses  # the same failure again writes no status


async def test_a_wrong_admin_password_and_a_foreign_secret_say_what_to_fix(setup: Setup) -> None:
    _reconciler, memory, _cache, api = setup
    api.objects["Secret", "agentkube-memory", "agentkube-redis"]["data"]["password"] = (
        base64.b64encode(b"wrong").decode()
    )
    check = await memory.ensure("team-e")
    assert (check.ok, check.reason) == (False, "RedisAccessDenied")
    assert "Secret agentkube-memory/agentkube-redis (key password)" in check.message
    assert "wrong" not in check.message
    api.objects["Secret", "team-f", SECRET_NAME] = {
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": "team-f", "labels": {}},
        "data": {},
    }
    check = await memory.ensure("team-f")
    assert (check.ok, check.reason) == (False, "SecretNotManaged")
    assert api.writes["apply Secret"] == 1  # team-e's; someone else's Secret is left alone
