"""KnowledgeBases on the real control plane: the operator (deploy/'s RBAC and admission policy)
ingests them with Jobs, into a real ``chroma run`` on loopback.

kwok runs no containers, so the Jobs' pods are kept off its nodes (the operator's agent pool
selects no node) and :mod:`tests.standins.job_kubelet` plays their kubelet: it runs the pod's
command here — the real ``agentkube memory ...`` against the real Chroma — and writes the pod
status; the real Job controller completes the Job; the operator reads the report.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.memory.servers import ChromaServer
from tests.operator.operator_process import OperatorProcess, cluster_config
from tests.operator.test_cluster import condition, get, wait_condition
from tests.plugins.testcluster import Cluster
from tests.standins.job_kubelet import AGENTKUBE, run_pod

pytestmark = pytest.mark.cluster
JSON = dict[str, Any]


@pytest.fixture(scope="module")
def knowledge_operator(
    installed: Cluster,
    chroma_server: ChromaServer,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
) -> Iterator[OperatorProcess]:
    # One operator at a time (the session's, without memory, would fight over the same objects).
    operator.stop()
    config = cluster_config(
        installed, memory={"redis": None, "vector": {"url": chroma_server.url, "peer": None}}
    )
    # Pods of this pool land on no node: kwok never sees them; the stand-in kubelet runs them.
    config["pools"]["held"] = {"nodeSelector": {"agentkube.test/kubelet": "job-kubelet"}}
    config["agentPool"] = "held"
    process = OperatorProcess(
        installed, operator_kubeconfig, tmp_path_factory.mktemp("kb-operator"), config
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        operator.start()


def knowledge_base(name: str, config_map: str | None = None, text: str = "") -> str:
    sources: JSON = {"inline": [{"name": "deploys.md", "text": text or DEPLOYS}]}
    if config_map is not None:
        sources["configMaps"] = [{"name": config_map}]
    return json.dumps(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "KnowledgeBase",
            "metadata": {"name": name},
            "spec": {"collection": name, "sources": sources},
        }
    )


DEPLOYS = "# Deploys\nA production deploy needs the approval of the release captain.\n"


def config_map(name: str, text: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"oncall.md": text},
        }
    )


def jobs_of(cluster: Cluster, namespace: str, kb: str) -> list[JSON]:
    listed = cluster.kubectl_json(
        "get", "jobs", "-n", namespace, "-l", f"ai.openvn/knowledgebase={kb}"
    )
    return list(listed["items"])


def wait_job(cluster: Cluster, namespace: str, kb: str, known: set[str]) -> JSON:
    def new() -> JSON | None:
        return next(
            (j for j in jobs_of(cluster, namespace, kb) if j["metadata"]["name"] not in known), None
        )

    return cluster.wait_until(new, f"a new Job of KnowledgeBase {namespace}/{kb}")


def run_job(cluster: Cluster, job: JSON, root: Path) -> subprocess.CompletedProcess[str]:
    """Play the kubelet for the Job's pod (the Job controller creates it)."""
    meta = job["metadata"]

    def pod() -> JSON | None:
        listed = cluster.kubectl_json(
            "get",
            "pods",
            "-n",
            meta["namespace"],
            "-l",
            f"batch.kubernetes.io/job-name={meta['name']}",
        )
        return listed["items"][0] if listed["items"] else None

    result = run_pod(
        cluster, cluster.wait_until(pod, f"the pod of Job {meta['name']}"), root / meta["name"]
    )
    assert result.returncode == 0, result.stderr
    return result


def memory_cli(chroma_server: ChromaServer, namespace: str, *args: str) -> Any:
    env = {
        **os.environ,
        "AGENTKUBE_NAMESPACE": namespace,
        "AGENTKUBE_VECTOR_URL": chroma_server.url,
    }
    result = subprocess.run(
        [str(AGENTKUBE), "memory", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_knowledge_base_is_ingested_by_a_job_and_again_only_when_a_source_changes(
    installed: Cluster,
    knowledge_operator: OperatorProcess,
    agent_namespace: str,
    chroma_server: ChromaServer,
    tmp_path: Path,
) -> None:
    ns = agent_namespace
    installed.apply(
        config_map("oncall", "# On-call\nThe release captain rotates every Tuesday.\n"), ns
    )
    installed.apply(knowledge_base("handbook", "oncall"), ns)
    first = wait_job(installed, ns, "handbook", set())
    # The pod the Job controller made passed Pod Security `restricted` (the namespace enforces it).
    pod = first["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    ingesting = wait_condition(installed, "knowledgebase", "handbook", ns, "Ingesting")
    assert condition(ingesting, "Ready")["reason"] == "Ingesting"  # type: ignore[index]

    run_job(installed, first, tmp_path)
    kb = wait_condition(installed, "knowledgebase", "handbook", ns)
    status = kb["status"]
    assert status["documents"] == 2 and status["chunks"] >= 2
    assert status["lastSyncTime"]
    assert condition(kb, "Ingesting")["status"] == "False"  # type: ignore[index]
    assert condition(kb, "Failed")["status"] == "False"  # type: ignore[index]
    hits = memory_cli(
        chroma_server, ns, "search", "--collection", "handbook", "who rotates on Tuesday"
    )
    assert hits[0]["source"] == "configmap/oncall/oncall.md"
    table = installed.kubectl("get", "knowledgebases", "-n", ns).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "COLLECTION",
        "DOCUMENTS",
        "CHUNKS",
        "LAST",
        "SYNC",
        "READY",
        "AGE",
    ]
    assert table.split("\n")[1].split()[:4] == ["handbook", "handbook", "2", str(status["chunks"])]
    assert table.split("\n")[1].split()[5] == "True"

    # A change of the ConfigMap's metadata only, and of the KnowledgeBase's: the same sources,
    # a reconcile that writes nothing. Then a change of the data: exactly one new Job.
    before = knowledge_operator.settled_writes(installed, ns)
    reconciles = knowledge_operator.reconciles_of("KnowledgeBase", ns, "handbook")
    installed.kubectl("annotate", "configmap", "oncall", "-n", ns, "touched=yes")
    installed.kubectl("annotate", "knowledgebase", "handbook", "-n", ns, "touched=yes")
    installed.wait_until(
        lambda: knowledge_operator.reconciles_of("KnowledgeBase", ns, "handbook") > reconciles,
        "a reconcile after the annotation",
    )
    assert knowledge_operator.writes_in(ns) == before
    installed.apply(
        config_map("oncall", "# On-call\nThe release captain rotates every Monday.\n"), ns
    )
    second = wait_job(installed, ns, "handbook", {first["metadata"]["name"]})
    run_job(installed, second, tmp_path)

    def resynced() -> JSON | None:
        body = get(installed, "knowledgebase", "handbook", ns)
        synced = (body or {}).get("status", {}).get("sourceHash")
        return body if synced and synced != status["sourceHash"] else None

    kb = installed.wait_until(resynced, "the KnowledgeBase synced with the changed ConfigMap")
    assert condition(kb, "Ready")["status"] == "True"  # type: ignore[index]
    names = {j["metadata"]["name"] for j in jobs_of(installed, ns, "handbook")}
    assert names == {first["metadata"]["name"], second["metadata"]["name"]}
    hits = memory_cli(
        chroma_server, ns, "search", "--collection", "handbook", "--top-k", "10", "captain rotates"
    )
    texts = " ".join(h["text"] for h in hits)
    assert "Monday" in texts and "Tuesday" not in texts


def test_deleting_a_knowledge_base_removes_its_collection_then_releases_it(
    installed: Cluster,
    knowledge_operator: OperatorProcess,
    agent_namespace: str,
    chroma_server: ChromaServer,
    tmp_path: Path,
) -> None:
    ns = agent_namespace
    installed.apply(knowledge_base("runbook"), ns)
    run_job(installed, wait_job(installed, ns, "runbook", set()), tmp_path)
    kb = wait_condition(installed, "knowledgebase", "runbook", ns)
    assert "ai.openvn/knowledgebase-collection" in kb["metadata"]["finalizers"]
    assert [c["name"] for c in memory_cli(chroma_server, ns, "collections")] == ["runbook"]

    known = {j["metadata"]["name"] for j in jobs_of(installed, ns, "runbook")}
    installed.kubectl("delete", "knowledgebase", "runbook", "-n", ns, "--wait=false")
    removal = wait_job(installed, ns, "runbook", known)
    assert removal["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "memory", "delete", "--collection", "runbook",
    ]  # fmt: skip
    assert get(installed, "knowledgebase", "runbook", ns) is not None  # held by the finalizer
    run_job(installed, removal, tmp_path)
    installed.wait_until(
        lambda: get(installed, "knowledgebase", "runbook", ns) is None, "the KnowledgeBase gone"
    )
    assert memory_cli(chroma_server, ns, "collections") == []


def test_a_source_that_cannot_be_read_fails_with_the_jobs_reason_and_the_pods_words(
    installed: Cluster,
    knowledge_operator: OperatorProcess,
    agent_namespace: str,
    tmp_path: Path,
) -> None:
    ns = agent_namespace
    body = json.loads(knowledge_base("broken"))
    body["spec"]["sources"]["urls"] = ["http://127.0.0.1:9/missing.md"]  # nothing listens
    installed.apply(json.dumps(body), ns)
    meta = wait_job(installed, ns, "broken", set())["metadata"]
    ran: set[str] = set()

    def next_pod() -> JSON | None:
        listed = installed.kubectl_json(
            "get", "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={meta['name']}"
        )
        fresh = [p for p in listed["items"] if p["metadata"]["name"] not in ran]
        return fresh[0] if fresh else None

    def failed() -> JSON | None:
        body = get(installed, "knowledgebase", "broken", ns)
        return body if (condition(body, "Failed") or {}).get("status") == "True" else None

    def failed_or_next_pod() -> tuple[JSON | None, JSON | None] | None:
        kb, pod = failed(), None
        if kb is None:
            pod = next_pod()
        return (kb, pod) if kb is not None or pod is not None else None

    # The Job's retries (backoffLimit 2): each new pod is run here until the Job gives up.
    while True:
        kb, pod = installed.wait_until(failed_or_next_pod, "the next pod, or Failed", 180)
        if kb is not None:
            break
        assert pod is not None
        ran.add(pod["metadata"]["name"])
        assert run_pod(installed, pod, tmp_path / pod["metadata"]["name"]).returncode == 1
    assert len(ran) == 3
    failure = condition(kb, "Failed")
    assert failure is not None and failure["reason"] == "BackoffLimitExceeded"
    assert (
        "spec.sources.urls[0] http://127.0.0.1:9/missing.md: cannot fetch it" in failure["message"]
    )
    assert condition(kb, "Ready")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    events = installed.kubectl_json(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=broken"
    )
    assert [e["reason"] for e in events["items"]] == ["BackoffLimitExceeded"]
