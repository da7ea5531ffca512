"""`testcluster info --json`: the contract other tools read the real node from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hack.testcluster.realnode import Info

from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster
COMMAND = Path(__file__).resolve().parents[2] / "hack" / "testcluster" / "testcluster"


def test_info_names_the_real_node_its_images_and_runtime_classes(
    testcluster: Cluster, real_node: Info
) -> None:
    out = subprocess.run(
        [sys.executable, str(COMMAND), "info", "--json", "--state-dir", str(testcluster.state_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    info = json.loads(out)

    assert info["kubeconfig"] == str(testcluster.kubeconfig)
    assert info["real_node"] == real_node.name
    assert info["images"]["python"] == real_node.images["python"]
    assert info["runtime_classes"] == {"gvisor": "runsc"}
    node = testcluster.kubectl_json("get", "node", real_node.name)
    assert node["metadata"]["labels"]["agentkube.openvn/pool"] == "sandbox"
    taints = {(t["key"], t["value"]) for t in node["spec"]["taints"]}
    assert {(t["key"], t["value"]) for t in info["real_node_tolerations"]} == taints
    runtime_class = testcluster.kubectl_json("get", "runtimeclass", "gvisor")
    assert runtime_class["handler"] == "runsc"
