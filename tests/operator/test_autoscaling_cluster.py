"""Autoscaled executors and pending work on the real control plane, with KEDA's real CRDs
(tests/operator/keda, v2.21.0) so the API server validates what the operator renders; the
operator runs with deploy/'s RBAC and shared memory on a real ``redis-server``.

KEDA's controller itself does not run (kwok nodes run no containers): its HPA writing the
replicas is what ``kubectl scale`` does, through the same scale subresource.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from agentkube.memory.team_streams import GROUP, task_stream
from agentkube.operator.memory import SECRET_NAME, URL_KEY
from tests.memory.servers import RedisServer
from tests.operator.operator_process import (
    OperatorProcess,
    cluster_config,
    instead_of,
    redis_memory,
)
from tests.operator.test_cluster import ENDPOINT_MODEL, agent, condition, get, wait_condition
from tests.operator.test_memory_cluster import can_i, decoded, memory_installed, memory_secret
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

__all__ = ["memory_installed"]  # the fixture, shared with the memory tests

KEDA_CRDS = Path(__file__).parent / "keda"
KEDA_CRD_NAMES = ("scaledobjects.keda.sh", "triggerauthentications.keda.sh")
AUTOSCALE = {"minReplicas": 0, "maxReplicas": 4, "lagTarget": 10}


@pytest.fixture(scope="module")
def keda_operator(
    memory_installed: Cluster,
    redis_with_admin_password: RedisServer,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
) -> Iterator[OperatorProcess]:
    memory = redis_memory(redis_with_admin_password.port)
    config = cluster_config(memory_installed, memory=memory, resyncSeconds=2, pendingSeconds=1)
    workdir = tmp_path_factory.mktemp("keda-operator")
    try:
        with instead_of(operator, memory_installed, operator_kubeconfig, workdir, config) as op:
            yield op
    finally:
        memory_installed.kubectl("delete", "-f", str(KEDA_CRDS), "--ignore-not-found")


def install_keda_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(KEDA_CRDS))
    for crd in KEDA_CRD_NAMES:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def executor(name: str, **spec: Any) -> str:
    return agent(name, "m", role="executor", **spec)


def replicas(cluster: Cluster, namespace: str, name: str) -> int | None:
    deployment = get(cluster, "deployment", name, namespace)
    return None if deployment is None else deployment["spec"].get("replicas")


def test_the_operator_may_touch_only_kedas_two_kinds_and_never_watch_them(
    memory_installed: Cluster,
) -> None:
    cluster = memory_installed
    install_keda_crds(cluster)  # kubectl auth can-i resolves the kinds through discovery
    for verb in ("get", "list", "create", "patch", "delete"):
        assert can_i(cluster, verb, "scaledobjects.keda.sh", "-n", "anywhere")
        assert can_i(cluster, verb, "triggerauthentications.keda.sh", "-n", "anywhere")
    assert not can_i(cluster, "watch", "scaledobjects.keda.sh", "-n", "anywhere")
    assert not can_i(cluster, "update", "scaledobjects.keda.sh", "-n", "anywhere")
    assert not can_i(cluster, "create", "scaledjobs.keda.sh", "-n", "anywhere")
    assert not can_i(cluster, "get", "clustertriggerauthentications.keda.sh")


def test_without_kedas_crd_an_autoscaled_executor_says_so_and_keeps_its_replicas(
    memory_installed: Cluster, keda_operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = memory_installed, agent_namespace
    cluster.kubectl("delete", "-f", str(KEDA_CRDS), "--ignore-not-found", "--wait")
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(executor("worker", replicas=2, autoscale=AUTOSCALE), ns)
    found = wait_condition(cluster, "agent", "worker", ns, "Autoscaling", "False")
    autoscaling = condition(found, "Autoscaling")
    assert autoscaling is not None and autoscaling["reason"] == "KEDANotInstalled"
    assert "spec.replicas (2) holds" in autoscaling["message"]
    # Once its pods are up, what keeps it from Ready is the missing KEDA.
    cluster.wait_until(
        lambda: (
            (condition(get(cluster, "agent", "worker", ns), "Ready") or {}).get("reason")
            == "KEDANotInstalled"
        ),
        "Ready=False for KEDANotInstalled",
        120,
    )
    assert replicas(cluster, ns, "worker") == 2


def test_with_kedas_crds_the_scaled_object_is_accepted_and_the_replicas_are_kedas(
    memory_installed: Cluster, keda_operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = memory_installed, agent_namespace
    install_keda_crds(cluster)
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(executor("worker", replicas=2, autoscale=AUTOSCALE), ns)
    found = wait_condition(cluster, "agent", "worker", ns, "Autoscaling", "True")
    reconciled = condition(found, "Reconciled")
    assert reconciled is not None and reconciled["status"] == "True", reconciled
    scaled = get(cluster, "scaledobject", "worker", ns)
    assert scaled is not None  # stored: the API server validated it against KEDA's schema
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == task_stream(ns, "worker")
    assert trigger["metadata"]["consumerGroup"] == GROUP
    assert trigger["metadata"]["lagCount"] == "10"
    assert trigger["authenticationRef"] == {"name": "worker"}
    auth = get(cluster, "triggerauthentication", "worker", ns)
    assert auth is not None
    assert {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("username", SECRET_NAME, "username"),
        ("password", SECRET_NAME, "password"),
    }
    # KEDA's HPA scales to zero through the scale subresource; the operator leaves it there.
    cluster.kubectl("scale", "deployment", "worker", "-n", ns, "--replicas=0")
    before = keda_operator.reconciles_of("Agent", ns, "worker")
    cluster.kubectl("label", "agent", "worker", "-n", ns, "touched=yes")
    cluster.wait_until(
        lambda: keda_operator.reconciles_of("Agent", ns, "worker") >= before + 2,
        "reconciles after the scale and the label",
        60,
    )
    assert replicas(cluster, ns, "worker") == 0
    # A deleted ScaledObject is made again at the next listing (they are not watched).
    cluster.kubectl("delete", "scaledobject", "worker", "-n", ns)
    cluster.wait_until(lambda: get(cluster, "scaledobject", "worker", ns), "ScaledObject again", 60)
    # Autoscaling switched off: KEDA's objects go, spec.replicas is the operator's again.
    patch = [{"op": "remove", "path": "/spec/autoscale"}]
    cluster.kubectl("patch", "agent", "worker", "-n", ns, "--type=json", "-p", json.dumps(patch))
    cluster.wait_until(
        lambda: (
            get(cluster, "scaledobject", "worker", ns) is None
            and get(cluster, "triggerauthentication", "worker", ns) is None
            and replicas(cluster, ns, "worker") == 2
        ),
        "KEDA's objects deleted and spec.replicas back",
        60,
    )
    assert condition(get(cluster, "agent", "worker", ns), "Autoscaling") is None


def test_kubectl_get_agents_shows_an_executors_pending_tasks_and_idle_costs_no_write(
    memory_installed: Cluster, keda_operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns, operator = memory_installed, agent_namespace, keda_operator
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(executor("worker"), ns)
    wait_condition(cluster, "agent", "worker", ns, "MemoryReady")
    # Three tasks queued as the agents queue them: with the namespace's own Redis user.
    user = redis.Redis.from_url(decoded(memory_secret(cluster, ns), URL_KEY))
    stream = task_stream(ns, "worker")
    user.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for n in range(3):
        user.xadd(stream, {"id": f"t{n}"})

    def pending() -> int | None:
        status = (get(cluster, "agent", "worker", ns) or {}).get("status") or {}
        value = status.get("pendingTasks")
        return value if isinstance(value, int) else None

    cluster.wait_until(lambda: pending() == 3, "pendingTasks 3", 60)
    table = cluster.kubectl("get", "agents", "-n", ns).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert row[header.index("PENDING")] == "3"
    # One taken (still pending while it runs), one finished: 2 left.
    read: Any = user.xreadgroup(GROUP, "replica-1", {stream: ">"}, count=2)
    user.xack(stream, GROUP, read[0][1][0][0])
    cluster.wait_until(lambda: pending() == 2, "pendingTasks 2", 60)
    user.close()
    # Nothing changes: the count is read every second and never rewritten.
    writes = operator.writes_in(ns)
    reconciles = operator.reconciles_of("Agent", ns, "worker")
    cluster.wait_until(
        lambda: operator.reconciles_of("Agent", ns, "worker") >= reconciles + 3,
        "three refreshes of the pending count",
        60,
    )
    assert operator.writes_in(ns) == writes
