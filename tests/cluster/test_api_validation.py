"""agentkube's CRDs and the seed manifest, as a real API server sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed-agent.yaml"


def test_crds_are_established_with_agent_and_model_kinds(
    testcluster: Cluster, agentkube_crds: list[str]
) -> None:
    assert {"agents.ai.openvn", "models.ai.openvn"} <= set(agentkube_crds)
    kinds = testcluster.kubectl("api-resources", "--api-group=ai.openvn", "-o", "name").stdout
    assert set(kinds.split()) >= {"agents.ai.openvn", "models.ai.openvn"}


def test_seed_manifest_is_accepted_verbatim(
    testcluster: Cluster, agentkube_crds: list[str], cluster_namespace: str
) -> None:
    out = testcluster.kubectl("apply", "-n", cluster_namespace, "-f", str(SEED)).stdout
    assert "agent.ai.openvn/research-agent created" in out
    agent = testcluster.kubectl_json("get", "agent", "research-agent", "-n", cluster_namespace)
    spec = agent["spec"]  # the CRD may add defaults; the seed's own fields must be intact
    assert spec["model"] == "llama-3-70b"
    assert spec["tools"] == ["web-browser", "python-interpreter"]
    assert spec["memory"] == "persistent"


def test_agent_with_an_unknown_memory_mode_is_rejected_naming_spec_memory(
    testcluster: Cluster, agentkube_crds: list[str], cluster_namespace: str
) -> None:
    invalid = SEED.read_text().replace("memory: persistent", "memory: forever")
    assert "memory: forever" in invalid
    result = testcluster.kubectl(
        "apply", "-n", cluster_namespace, "-f", "-", input=invalid, check=False
    )
    assert result.returncode != 0
    assert "spec.memory" in result.stderr
    assert "forever" in result.stderr
    listed = testcluster.kubectl("get", "agents", "-n", cluster_namespace, "-o", "name").stdout
    assert listed.strip() == ""


def test_an_agent_and_its_knowledge_base_apply_from_one_file(
    testcluster: Cluster, agentkube_crds: list[str], cluster_namespace: str
) -> None:
    example = REPO / "examples" / "knowledge-agent.yaml"
    out = testcluster.kubectl("apply", "-n", cluster_namespace, "-f", str(example)).stdout
    assert "knowledgebase.ai.openvn/release-handbook created" in out
    assert "agent.ai.openvn/release-helper created" in out
    kb = testcluster.kubectl_json("get", "kb", "release-handbook", "-n", cluster_namespace)
    assert [d["name"] for d in kb["spec"]["sources"]["inline"]] == ["deploys.md", "rollbacks.md"]


def test_a_knowledge_base_with_a_bad_url_is_rejected_naming_the_field(
    testcluster: Cluster, agentkube_crds: list[str], cluster_namespace: str
) -> None:
    manifest = (
        "apiVersion: ai.openvn/v1\nkind: KnowledgeBase\nmetadata: {name: bad}\n"
        "spec: {collection: handbook, sources: {urls: ['ftp://example.com/a.md']}}\n"
    )
    result = testcluster.apply(manifest, cluster_namespace, check=False)
    assert result.returncode != 0
    assert "spec.sources.urls[0]" in result.stderr
