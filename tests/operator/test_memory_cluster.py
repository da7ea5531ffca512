"""Shared memory on the real control plane: the operator (with deploy/'s RBAC and deploy/memory's
Role) gives each agent namespace its Redis credentials, against a real ``redis-server`` with an
admin password on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from agentkube.operator.memory import SECRET_NAME, URL_KEY
from tests.memory.servers import RedisServer
from tests.operator.conftest import DEPLOY
from tests.operator.operator_process import (
    OperatorProcess,
    cluster_config,
    instead_of,
    redis_memory,
)
from tests.operator.test_cluster import (
    ENDPOINT_MODEL,
    agent,
    bind_volume,
    condition,
    env_of,
    get,
    wait_condition,
)
from tests.plugins.redis import ADMIN_PASSWORD
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

OPERATOR = "system:serviceaccount:agentkube-system:agentkube-operator"
VECTOR_URL = "http://chroma.example.test:8000"


@pytest.fixture(scope="module")
def memory_installed(installed: Cluster) -> Cluster:
    """deploy/memory's namespace and the operator's Role there, plus the admin Secret (the
    servers themselves run on loopback: kwok nodes run no containers)."""
    installed.apply(DEPLOY / "memory" / "namespace.yaml")
    installed.apply(DEPLOY / "memory" / "rbac.yaml", "agentkube-memory")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "agentkube-redis", "namespace": "agentkube-memory"},
        "stringData": {"password": ADMIN_PASSWORD},
    }
    installed.apply(json.dumps(secret))
    return installed


@pytest.fixture(scope="module")
def memory_operator(
    memory_installed: Cluster,
    redis_with_admin_password: RedisServer,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
) -> Iterator[OperatorProcess]:
    memory = redis_memory(redis_with_admin_password.port, {"url": VECTOR_URL, "peer": None})
    with instead_of(
        operator,
        memory_installed,
        operator_kubeconfig,
        tmp_path_factory.mktemp("memory-operator"),
        cluster_config(memory_installed, memory=memory),
    ) as process:
        yield process


def memory_secret(cluster: Cluster, namespace: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return get(cluster, "secret", SECRET_NAME, namespace)

    found: dict[str, Any] = cluster.wait_until(probe, f"Secret {namespace}/{SECRET_NAME}")
    return found


def decoded(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def can_i(cluster: Cluster, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={OPERATOR}", check=False)
    return result.stdout.strip() == "yes"


def test_the_operator_may_touch_only_the_memory_secrets(memory_installed: Cluster) -> None:
    cluster = memory_installed
    assert can_i(cluster, "get", f"secret/{SECRET_NAME}", "-n", "anywhere")
    assert can_i(cluster, "patch", f"secret/{SECRET_NAME}", "-n", "anywhere")
    assert not can_i(cluster, "get", "secret/someone-elses", "-n", "anywhere")
    assert not can_i(cluster, "list", "secrets", "-n", "anywhere")
    assert can_i(cluster, "create", f"secret/{SECRET_NAME}", "-n", "anywhere")
    assert not can_i(cluster, "create", "secrets", "-n", "anywhere")  # any other name
    assert not can_i(cluster, "delete", f"secret/{SECRET_NAME}", "-n", "anywhere")
    assert can_i(cluster, "get", "secret/agentkube-redis", "-n", "agentkube-memory")
    assert not can_i(cluster, "get", "secret/agentkube-redis", "-n", "agentkube-system")


def test_an_agent_namespace_gets_its_secret_env_and_a_user_confined_to_its_keys(
    memory_installed: Cluster,
    memory_operator: OperatorProcess,
    redis_with_admin_password: RedisServer,
) -> None:
    cluster = memory_installed
    namespaces = [
        cluster.create_namespace(
            "mem-a", labels={"pod-security.kubernetes.io/enforce": "restricted"}
        ),
        cluster.create_namespace(
            "mem-b", labels={"pod-security.kubernetes.io/enforce": "restricted"}
        ),
    ]
    try:
        for ns in namespaces:
            cluster.apply(ENDPOINT_MODEL % "m", ns)
            bind_volume(cluster, ns, "keeper")
            cluster.apply(agent("keeper", "m", memory="persistent"), ns)
        for ns in namespaces:
            found = wait_condition(cluster, "agent", "keeper", ns)
            memory = condition(found, "MemoryReady")
            assert memory is not None and memory["status"] == "True"
        a, b = (memory_secret(cluster, ns) for ns in namespaces)
        assert a["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "agentkube-operator"
        deployment = get(cluster, "deployment", "keeper", namespaces[0])
        assert deployment is not None
        env = env_of(deployment)
        assert env["AGENTKUBE_REDIS_URL"] == {"secretKeyRef": {"name": SECRET_NAME, "key": URL_KEY}}
        assert env["AGENTKUBE_VECTOR_URL"] == VECTOR_URL
        # The URL the pod gets logs in as the namespace's own user, which cannot read B's keys.
        user_a = redis.Redis.from_url(decoded(a, URL_KEY))
        user_b = redis.Redis.from_url(decoded(b, URL_KEY))
        key_a, key_b = (f"agentkube:{ns}:kv:plan" for ns in namespaces)
        user_a.set(key_a, b"a's plan")
        user_b.set(key_b, b"b's plan")
        assert user_a.get(key_a) == b"a's plan"
        with pytest.raises(redis_errors.NoPermissionError):
            user_a.get(key_b)
        with pytest.raises(redis_errors.NoPermissionError):
            user_a.set(key_b, b"overwritten")
        assert decoded(a, "username") == f"agentkube-{namespaces[0]}"
        user_a.close()
        user_b.close()
    finally:
        for ns in namespaces:
            cluster.delete_namespace(ns)


def test_an_unchanged_namespace_writes_nothing_and_a_deleted_secret_comes_back_the_same(
    memory_installed: Cluster, memory_operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns, operator = memory_installed, agent_namespace, memory_operator
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("idle", "m"), ns)
    cluster.apply(agent("other", "m", memory="none"), ns)
    for name in ("idle", "other"):
        wait_condition(cluster, "agent", name, ns)
    before = operator.settled_writes(cluster, ns)
    secret = memory_secret(cluster, ns)
    log = operator.log.read_text(errors="replace")
    assert log.count(f"applied Secret {ns}/{SECRET_NAME}") == 1  # one for both agents
    reconciles = operator.reconciles_of("Agent", ns, "idle")
    cluster.kubectl("label", "agent", "idle", "-n", ns, "touched=yes")
    cluster.kubectl("label", "secret", SECRET_NAME, "-n", ns, "touched=yes")
    cluster.wait_until(
        lambda: operator.reconciles_of("Agent", ns, "idle") >= reconciles + 2,
        "reconciles after the labels on the Agent and on the Secret",
        60,
    )
    assert operator.writes_in(ns) == before  # they ran, and wrote nothing
    cluster.kubectl("delete", "secret", SECRET_NAME, "-n", ns)

    def recreated() -> dict[str, Any] | None:
        again = get(cluster, "secret", SECRET_NAME, ns)
        return again if again and again["metadata"]["uid"] != secret["metadata"]["uid"] else None

    again = cluster.wait_until(recreated, f"Secret {ns}/{SECRET_NAME} made again", 60)
    assert decoded(again, "password") == decoded(secret, "password")  # running pods keep working


def test_a_redis_that_is_down_is_the_agents_condition_until_it_is_back(
    memory_installed: Cluster,
    memory_operator: OperatorProcess,
    redis_with_admin_password: RedisServer,
    agent_namespace: str,
) -> None:
    cluster, ns = memory_installed, agent_namespace
    redis_with_admin_password.kill()
    try:
        cluster.apply(ENDPOINT_MODEL % "m", ns)
        cluster.apply(agent("patient", "m"), ns)
        found = wait_condition(cluster, "agent", "patient", ns, "MemoryReady", "False")
        memory = condition(found, "MemoryReady")
        assert memory is not None and memory["reason"] == "RedisUnavailable"
        url = f"redis://127.0.0.1:{redis_with_admin_password.port}/0"
        assert memory["message"].startswith(f"Redis at {url} is unavailable")
        assert "\n" not in memory["message"]
        ready = condition(found, "Ready")
        assert ready is not None and ready["reason"] == "RedisUnavailable"
        assert get(cluster, "deployment", "patient", ns) is not None  # the rest is applied
        assert memory_operator.proc is not None and memory_operator.proc.poll() is None
    finally:
        redis_with_admin_password.start()
    wait_condition(cluster, "agent", "patient", ns, "MemoryReady", "True", timeout=90)


def test_a_deleted_namespace_takes_its_redis_user_and_leaves_the_others(
    memory_installed: Cluster,
    memory_operator: OperatorProcess,
    redis_with_admin_password: RedisServer,
    agent_namespace: str,
) -> None:
    cluster, stays = memory_installed, agent_namespace
    goes = cluster.create_namespace(
        "mem-goes", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    try:
        for ns in (goes, stays):
            cluster.apply(ENDPOINT_MODEL % "m", ns)
            cluster.apply(agent("keeper", "m"), ns)
        for ns in (goes, stays):
            found = wait_condition(cluster, "agent", "keeper", ns, "MemoryReady", "True")
            assert found is not None
        urls = {ns: decoded(memory_secret(cluster, ns), URL_KEY) for ns in (goes, stays)}
    finally:
        cluster.delete_namespace(goes)
    admin = redis.Redis.from_url(redis_with_admin_password.url, password=ADMIN_PASSWORD)

    def removed() -> bool:
        return f"agentkube-{goes}" not in admin.acl_users()

    try:
        cluster.wait_until(removed, f"the Redis user of deleted namespace {goes} removed", 120)
        assert f"agentkube-{stays}" in admin.acl_users()
    finally:
        admin.close()
    with pytest.raises(redis_errors.AuthenticationError):
        redis.Redis.from_url(urls[goes]).set(f"agentkube:{goes}:kv:x", b"1")
    still = redis.Redis.from_url(urls[stays])
    still.set(f"agentkube:{stays}:kv:x", b"1")
    still.close()
    assert f"Redis user agentkube-{goes} removed" in memory_operator.log.read_text(errors="replace")
