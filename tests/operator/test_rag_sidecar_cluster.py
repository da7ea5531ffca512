"""The RAG proxy as a native sidecar on the real control plane (kwok nodes run the pods).

The Agent's namespace enforces Pod Security ``restricted``: the pod is only created if the
sidecar is locked down like the agent, and the API server must accept an init container with
``restartPolicy: Always`` (a native sidecar).
"""

from __future__ import annotations

import functools
import json

import pytest

from tests.operator.operator_process import OperatorProcess
from tests.operator.test_cluster import ENDPOINT_MODEL, get, running_pods, wait_condition
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster


def test_an_agent_with_rag_runs_the_proxy_as_a_native_sidecar_in_front_of_its_model(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "small", ns)
    manifest = {
        "apiVersion": "ai.openvn/v1",
        "kind": "Agent",
        "metadata": {"name": "reader"},
        "spec": {"model": "small", "rag": {"collection": "handbook", "topK": 2}},
    }
    cluster.apply(json.dumps(manifest), ns)
    cluster.wait_until(functools.partial(get, cluster, "deployment", "reader", ns), "deployment")

    (pod,) = running_pods(cluster, ns, "ai.openvn/agent=reader", 1)
    (sidecar,) = pod["spec"]["initContainers"]
    assert sidecar["name"] == "rag-proxy" and sidecar["restartPolicy"] == "Always"
    args = sidecar["args"]
    assert args[args.index("--upstream") + 1] == "https://llm.example.com/v1"
    assert args[args.index("--collection") + 1] == "handbook"
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    agent_env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert agent_env["AGENTKUBE_MODEL_BASE_URL"] == "http://127.0.0.1:8081/v1"
    assert agent_env["AGENTKUBE_RAG_SIDECAR"] == "http://127.0.0.1:8081"
    # spec.rag is no longer Unsupported: the Agent is Ready.
    ready = wait_condition(cluster, "agent", "reader", ns)
    assert ready["status"]["endpoint"] == f"http://reader.{ns}.svc:8080"
