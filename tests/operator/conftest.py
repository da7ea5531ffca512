"""Builders for the operator's pure tests: Agents and Models as the API server returns them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.api.models import Agent, Model
from tests.operator.operator_process import OperatorProcess, cluster_config
from tests.plugins.testcluster import Cluster

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-agent.yaml"


def agent(**spec: Any) -> Agent:
    """An Agent as read from the API server (uid and generation set); seed spec unless given."""
    base = yaml.safe_load(SEED.read_text())["spec"]
    return Agent.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {
                "name": spec.pop("name", "research-agent"),
                "uid": "uid-1",
                "generation": 1,
            },
            "spec": {**base, **spec},
        }
    )


def model(name: str = "llama-3-70b", **spec: Any) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Model",
            "metadata": {"name": name, "uid": "uid-m", "generation": 1},
            "spec": spec or {"serve": {"model": "meta-llama/Meta-Llama-3-70B-Instruct"}},
        }
    )


# --------------------------------------------------------------------------- cluster fixtures

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OPERATOR_NAMESPACE = "agentkube-system"


@pytest.fixture(scope="session")
def installed(testcluster: Cluster) -> Cluster:
    """``kubectl apply -k deploy/``: namespace, CRDs, RBAC and the operator Deployment."""
    testcluster.kubectl("apply", "-k", str(DEPLOY))  # the install command, verbatim
    for crd in ("agents.ai.openvn", "models.ai.openvn", "mcpservers.ai.openvn"):
        testcluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return testcluster


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: Cluster) -> Path:
    """Credentials of the operator's ServiceAccount: the tests get exactly deploy/'s RBAC."""
    return installed.kubeconfig_for_service_account(OPERATOR_NAMESPACE, "agentkube-operator")


@pytest.fixture(scope="session")
def operator(
    installed: Cluster, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator process for the session (tests that kill it start their own)."""
    process = OperatorProcess(
        installed,
        operator_kubeconfig,
        tmp_path_factory.mktemp("operator"),
        cluster_config(installed),
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def agent_namespace(installed: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security ``restricted``: non-compliant pods are refused."""
    name = installed.create_namespace(
        request.node.name, labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    yield name
    installed.delete_namespace(name)
