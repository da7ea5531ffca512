"""The operator's /metrics after it reconciled an Agent on the real API server: every operator
metric docs/observability.md lists is there, with its documented labels."""

from __future__ import annotations

import urllib.request

import pytest

from tests.operator.operator_process import OperatorProcess
from tests.operator.test_cluster import ENDPOINT_MODEL, agent, wait_condition
from tests.plugins.testcluster import Cluster
from tests.telemetry.documented import missing

pytestmark = pytest.mark.cluster


def test_the_operator_serves_its_documented_metrics(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    installed.apply(ENDPOINT_MODEL % "m", agent_namespace)
    installed.apply(agent("metered", "m"), agent_namespace)
    wait_condition(installed, "agent", "metered", agent_namespace, "Reconciled", timeout=90)
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        page = response.read().decode()
    assert missing(page, "operator") == []
    samples = operator.metrics() or {}
    assert samples["agentkube_operator_reconciles_total"] >= 1
    assert any(k.startswith("agentkube_operator_api_writes_total{") for k in samples)
