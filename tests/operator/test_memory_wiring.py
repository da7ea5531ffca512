"""Shared memory in agent pods (pure): configuration, env, the namespace Secret, egress."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agentkube.api import pod_contract as pc
from agentkube.memory.errors import InvalidName
from agentkube.operator.config import OperatorConfig, parse_config
from agentkube.operator.errors import OperatorConfigError
from agentkube.operator.memory import (
    SECRET_NAME,
    URL_KEY,
    render_secret,
    secret_password,
)
from agentkube.operator.naming import MANAGED_BY, MANAGED_BY_LABEL
from agentkube.operator.networking import render_network_policy
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

SHARED = parse_config({"memory": {}})  # deploy/memory's servers
RAG = {"collection": "handbook", "topK": 3}


def pod(config: OperatorConfig, **spec: Any) -> dict[str, Any]:
    resolved = endpoint_for_model("llama-3-70b", "ns", {"llama-3-70b": model()}, config)
    children = render_agent(agent(**spec), "ns", resolved, config)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return result


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def egress(config: OperatorConfig, **spec: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = render_network_policy(
        agent(**spec), "ns", None, config, {"name": "x"}
    )["spec"]["egress"]
    return rules


def test_memory_is_off_unless_configured_and_then_names_deploy_memorys_services() -> None:
    assert OperatorConfig().memory is None
    assert SHARED.memory is not None and SHARED.memory.redis and SHARED.memory.vector
    assert SHARED.memory.redis.url == "redis://agentkube-redis.agentkube-memory:6379/0"
    assert SHARED.memory.vector.url == "http://agentkube-chroma.agentkube-memory:8000"
    admin = SHARED.memory.redis.admin_password_secret
    assert admin is not None
    assert (admin.namespace, admin.name, admin.key) == (
        "agentkube-memory",
        "agentkube-redis",
        "password",
    )


def test_a_managed_redis_and_chroma_are_named_by_url_and_reached_by_port() -> None:
    config = parse_config(
        {
            "memory": {
                "redis": {"url": "rediss://redis.example.net:6380", "peer": None},
                "vector": {"url": "https://chroma.example.net", "peer": None},
            }
        }
    )
    rules = egress(config, tools=[], memory="persistent")
    anywhere = [r for r in rules if "ipBlock" in r["to"][0]]
    assert [r["ports"] for r in anywhere] == [
        [{"protocol": "TCP", "port": 6380}],
        [{"protocol": "TCP", "port": 443}],
    ]
    assert env_of(pod(config, memory="persistent")["containers"][0])[pc.ENV_VECTOR_URL] == (
        "https://chroma.example.net"
    )


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"redis": {"url": "redis://admin:hunter2@redis:6379"}}, "memory.redis.url"),
        ({"redis": {"url": "http://redis:6379"}}, "memory.redis.url"),
        ({"vector": {"url": "chroma:8000"}}, "memory.vector.url"),
        ({"redis": {"adminPasswordSecret": {"name": "x", "key": "y"}}}, "namespace"),
        ({"redis": {"recheckSeconds": 0}}, "recheckSeconds"),
    ],
)
def test_a_bad_memory_setting_is_one_line_naming_it(setting: dict[str, Any], named: str) -> None:
    with pytest.raises(OperatorConfigError) as raised:
        parse_config({"memory": setting}, "operator.yaml")
    message = str(raised.value)
    assert "\n" not in message and named in message and message.startswith("operator.yaml")
    assert "hunter2" not in message


def test_every_agent_reads_its_redis_url_from_the_namespace_secret() -> None:
    for memory in ("none", "ephemeral", "persistent"):
        env = env_of(pod(SHARED, memory=memory)["containers"][0])
        assert env[pc.ENV_REDIS_URL] == {"secretKeyRef": {"name": SECRET_NAME, "key": URL_KEY}}
        assert env[pc.ENV_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pc.ENV_REDIS_URL not in env_of(pod(OperatorConfig())["containers"][0])


def test_only_agents_that_use_vectors_get_the_chroma_url() -> None:
    url = "http://agentkube-chroma.agentkube-memory:8000"
    assert env_of(pod(SHARED, memory="persistent")["containers"][0])[pc.ENV_VECTOR_URL] == url
    assert env_of(pod(SHARED, memory="none", rag=RAG)["containers"][0])[pc.ENV_VECTOR_URL] == url
    assert pc.ENV_VECTOR_URL not in env_of(pod(SHARED, memory="ephemeral")["containers"][0])


def test_the_rag_sidecar_reads_the_memory_chroma_without_redis_credentials() -> None:
    (sidecar,) = pod(SHARED, rag=RAG)["initContainers"]
    args = sidecar["args"]
    assert args[args.index("--vector-url") + 1] == "http://agentkube-chroma.agentkube-memory:8000"
    env = env_of(sidecar)
    assert env[pc.ENV_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pc.ENV_REDIS_URL not in env  # it never touches Redis: no credentials it does not use
    (unconfigured,) = pod(OperatorConfig(), rag=RAG)["initContainers"]
    assert "--vector-url" not in unconfigured["args"]


def test_a_sidecar_with_its_own_chroma_reaches_it_by_port() -> None:
    config = parse_config({"memory": {}, "ragSidecar": {"vectorUrl": "http://kb.example:9000"}})
    rules = egress(config, tools=[], memory="ephemeral", rag=RAG)
    ports = [p["port"] for r in rules if "ipBlock" in r["to"][0] for p in r["ports"]]
    assert ports == [9000]


def test_the_namespace_secret_holds_the_user_its_password_and_the_url_with_both() -> None:
    secret = render_secret("team-a", "redis://agentkube-redis.agentkube-memory:6379/0", "s3cr3t")
    meta = secret["metadata"]
    assert (meta["name"], meta["namespace"]) == (SECRET_NAME, "team-a")
    assert meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert "ownerReferences" not in meta  # one per namespace: it outlives any single Agent
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        URL_KEY: "redis://agentkube-team-a:s3cr3t@agentkube-redis.agentkube-memory:6379/0",
        "username": "agentkube-team-a",
        "password": "s3cr3t",
    }
    assert secret_password(secret) == "s3cr3t"
    assert secret_password({"data": {"password": "not base64!"}}) is None
    assert secret_password(None) is None


def test_a_server_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidName) as raised:
        render_secret("team-a", "redis://admin:hunter2@redis:6379", "pw")
    assert "hunter2" not in str(raised.value)
