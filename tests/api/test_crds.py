"""The CRDs are generated from the models, are structural, and match what is checked in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from agentkube.api.crds import all_crds, crd_files, render_all

ROOT = Path(__file__).resolve().parents[2]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{i}]"))
    return found


def test_checked_in_crds_equal_the_generated_output() -> None:
    on_disk = {p.name: p.read_text() for p in (ROOT / "deploy" / "crds").glob("ai.openvn_*.yaml")}
    assert on_disk == crd_files(), "deploy/crds is stale: run `make crds`"


def test_schemas_are_structural() -> None:
    for crd in all_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "$ref" not in node, path
            assert "title" not in node, path
            assert node.get("additionalProperties") is not False, path
            if "properties" in node and not path.endswith(".properties"):
                assert node.get("type") == "object", path
            if "anyOf" in node and not path.endswith(".properties"):
                assert node.get("x-kubernetes-int-or-string") is True, path


def test_agent_crd_validates_enums_patterns_and_has_status_and_columns() -> None:
    agent = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "Agent")
    version = agent["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["model"]
    assert spec["properties"]["memory"]["enum"] == ["none", "ephemeral", "persistent"]
    assert "python-interpreter" in spec["properties"]["tools"]["items"]["pattern"]
    assert any("planner" in rule["rule"] for rule in spec["x-kubernetes-validations"])
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Tools", "Memory", "Pending", "Ready", "Age", "Reason", "Endpoint"]
    wide_only = {c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")}
    assert wide_only == {"Reason", "Endpoint"}


def test_model_crd_requires_exactly_one_source() -> None:
    model = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "Model")
    spec = model["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "has(self.endpoint) != has(self.serve)" in rules


def test_crds_command_prints_every_crd_as_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentkube", "crds"], capture_output=True, text=True, check=True
    ).stdout
    assert out == render_all()
    docs = list(yaml.safe_load_all(out))
    names = [d["metadata"]["name"] for d in docs]
    assert names == [
        "agents.ai.openvn",
        "models.ai.openvn",
        "knowledgebases.ai.openvn",
        "mcpservers.ai.openvn",
    ]
