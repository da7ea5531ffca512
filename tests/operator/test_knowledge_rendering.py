"""KnowledgeBases without a cluster: the source hash, the ingestion and removal Jobs, their
NetworkPolicy, and reading a Job's outcome and its pod's report (all pure)."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.api.loading import parse_documents
from agentkube.api.models import KnowledgeBase
from agentkube.operator.config import OperatorConfig, parse_config
from agentkube.operator.knowledge import (
    SourceMissing,
    job_outcome,
    parse_report,
    pod_failure,
    pod_report,
    render_ingestion,
    render_removal,
    selected_data,
    source_hash,
)

JSON = dict[str, Any]
CONFIG = parse_config({"memory": {"redis": None}})  # deploy/memory's Chroma
DOCS = {"data": {"a.md": "# A\nalpha", "b.txt": "beta", "c.txt": "gamma"}}


def kb(**sources: Any) -> KnowledgeBase:
    return KnowledgeBase.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "KnowledgeBase",
            "metadata": {"name": "handbook", "uid": "uid-kb", "generation": 1},
            "spec": {
                "collection": "handbook",
                "sources": sources
                or {
                    "inline": [{"name": "deploys.md", "text": "# Deploys\nask the captain"}],
                    "configMaps": [{"name": "docs", "keys": ["a.md", "b.txt"]}],
                },
            },
        }
    )


def hash_of(base: KnowledgeBase, data: JSON) -> str:
    return source_hash(base, selected_data(base, {"docs": data}))


def by_kind(children: list[JSON]) -> dict[str, JSON]:
    return {c["kind"]: c for c in children}


def test_the_hash_follows_the_spec_and_the_selected_keys_only() -> None:
    base = kb()
    first = hash_of(base, DOCS)
    assert hash_of(base, {"data": dict(DOCS["data"])}) == first
    unselected = {"data": {**DOCS["data"], "c.txt": "changed"}}
    assert hash_of(base, unselected) == first
    selected = {"data": {**DOCS["data"], "b.txt": "changed"}}
    assert hash_of(base, selected) != first
    other = kb(inline=[{"name": "deploys.md", "text": "changed"}], configMaps=[{"name": "docs"}])
    assert hash_of(other, DOCS) != first
    # Every key when none are named: the one the other KnowledgeBase ignored counts here.
    assert hash_of(other, unselected) != hash_of(other, DOCS)


def test_a_missing_config_map_or_key_is_named() -> None:
    with pytest.raises(SourceMissing, match=r"ConfigMap docs .* does not exist"):
        selected_data(kb(), {"docs": None})
    with pytest.raises(SourceMissing, match=r"ConfigMap docs has no key b\.txt"):
        selected_data(kb(), {"docs": {"data": {"a.md": "x"}}})


def test_the_ingestion_job_is_locked_down_and_named_for_its_sources() -> None:
    children = by_kind(render_ingestion(kb(), "team-a", CONFIG, "0123456789"))
    assert set(children) == {"ConfigMap", "NetworkPolicy", "Job"}
    job = children["Job"]
    assert job["metadata"]["name"] == "handbook-kb-0123456789"
    for child in children.values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "KnowledgeBase",
            "uid-kb",
            True,
        )
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "agentkube-operator"
    spec = job["spec"]
    assert spec["backoffLimit"] == 2 and spec["activeDeadlineSeconds"] > 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == CONFIG.agent_image
    assert container["args"][:3] == [
        "memory",
        "sync-knowledgebase",
        "/etc/agentkube/knowledge/knowledgebase.yaml",
    ]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"] == CONFIG.agent_resources.limits["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENTKUBE_VECTOR_URL"]["value"] == "http://agentkube-chroma.agentkube-memory:8000"
    assert env["AGENTKUBE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert not any("REDIS" in name for name in env)  # vectors only
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": CONFIG.tmp_size_limit}}
    assert volumes["manifest"]["configMap"] == {"name": "handbook-kb"}
    assert volumes["source-0"]["configMap"] == {
        "name": "docs",
        "items": [{"key": "a.md", "path": "a.md"}, {"key": "b.txt", "path": "b.txt"}],
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["source-0"] == {
        "name": "source-0",
        "mountPath": "/etc/agentkube/knowledge/configmaps/docs",
        "readOnly": True,
    }
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "knowledge-ingestion"
    assert labels["ai.openvn/knowledgebase"] == "handbook"


def test_the_manifest_config_map_is_the_knowledge_base_the_job_reads() -> None:
    config_map = by_kind(render_ingestion(kb(), "team-a", CONFIG, "h"))["ConfigMap"]
    (read,) = parse_documents(config_map["data"]["knowledgebase.yaml"], "mounted")
    assert isinstance(read, KnowledgeBase)
    assert read.spec == kb().spec and read.metadata.name == "handbook"


def test_egress_is_dns_and_the_vector_store_and_url_ports_only_with_urls() -> None:
    policy = by_kind(render_ingestion(kb(), "team-a", CONFIG, "h"))["NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "ai.openvn/knowledgebase": "handbook",
        "app.kubernetes.io/component": "knowledge-ingestion",
    }
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]  # (an empty list would be dropped: endless drift)
    dns, vector = policy["spec"]["egress"]
    assert dns["ports"][0]["port"] == 53
    assert vector == {
        "to": [
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "agentkube-chroma"}},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "agentkube-memory"}
                },
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8000}],
    }
    with_urls = kb(urls=["https://example.com/a.md", "http://docs.example.com:8080/b"])
    policy = by_kind(render_ingestion(with_urls, "team-a", CONFIG, "h"))["NetworkPolicy"]
    web = policy["spec"]["egress"][2]
    assert [p["port"] for p in web["ports"]] == [443, 8080]
    assert web["to"][0]["ipBlock"]["except"] == CONFIG.web_excluded_cidrs


def test_the_removal_job_deletes_the_collection_and_mounts_no_source() -> None:
    children = by_kind(render_removal(kb(), "team-a", CONFIG))
    assert set(children) == {"NetworkPolicy", "Job"}
    job = children["Job"]
    assert job["metadata"]["name"] == "handbook-kb-remove"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["memory", "delete", "--collection", "handbook"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert pod["automountServiceAccountToken"] is False


def test_a_vector_store_without_pods_is_reached_by_port() -> None:
    config = OperatorConfig.model_validate(
        {"memory": {"redis": None, "vector": {"url": "http://10.0.0.5:8001", "peer": None}}}
    )
    policy = by_kind(render_ingestion(kb(), "team-a", config, "h"))["NetworkPolicy"]
    assert policy["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 8001}]


def _job(kind: str, reason: str = "") -> JSON:
    condition = {"type": kind, "status": "True", "reason": reason, "message": "why"}
    return {"status": {"conditions": [condition]}}


def test_a_job_is_running_complete_or_failed_with_its_reason() -> None:
    assert not job_outcome(None).done
    assert not job_outcome({"status": {"active": 1}}).done
    complete = job_outcome(_job("Complete"))
    assert complete.done and not complete.failed
    failed = job_outcome(_job("Failed", "BackoffLimitExceeded"))
    assert failed.done and failed.failed
    assert (failed.reason, failed.message) == ("BackoffLimitExceeded", "why")


def _pod(phase: str, message: str, exit_code: int = 0) -> JSON:
    terminated = {"exitCode": exit_code, "message": message}
    return {
        "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": terminated}}]}
    }


def test_the_report_is_read_from_the_succeeded_pod() -> None:
    report = '{"documents": 3, "chunks": 7, "added": 7, "unchanged": 0, "removed": 0}'
    assert parse_report(report) == {
        "documents": 3,
        "chunks": 7,
        "added": 7,
        "unchanged": 0,
        "removed": 0,
    }
    assert parse_report("not json") is None
    assert parse_report('{"documents": 3}') is None
    assert pod_report([_pod("Failed", report, 1)]) is None
    assert pod_report([_pod("Failed", "boom", 1), _pod("Succeeded", report)]) == parse_report(
        report
    )


def test_a_failed_pod_says_why_in_its_last_line() -> None:
    pods = [_pod("Failed", "Traceback\nerror: cannot fetch https://x (ConnectError)", 1)]
    assert pod_failure(pods) == "error: cannot fetch https://x (ConnectError)"
    assert pod_failure([_pod("Succeeded", "{}")]) is None
