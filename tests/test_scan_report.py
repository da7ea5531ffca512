"""hack/scan_report.py: scanner findings against the accepted list (hack/scan.sh's verdict)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hack.scan_report import accepted, main

ROOT = Path(__file__).resolve().parents[1]


def outputs(tmp_path: Path, kube_score: str, checkov: list[str]) -> Path:
    failed = [{"check_id": c, "resource": "Deployment.agents.research-agent"} for c in checkov]
    (tmp_path / "checkov.json").write_text(json.dumps({"results": {"failed_checks": failed}}))
    (tmp_path / "kube-score.txt").write_text(kube_score)
    return tmp_path


def test_a_finding_nobody_accepted_fails_the_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = outputs(
        tmp_path,
        "[OK] research-agent/agents apps/v1/Deployment\n"
        "[CRITICAL] research-agent/agents apps/v1/Deployment: (agent) CPU limit is not set\n",
        ["CKV_K8S_11", "CKV_K8S_20"],
    )
    rules = tmp_path / "accepted.txt"
    rules.write_text(
        "checkov | CKV_K8S_11 | Deployment/*/*  # why\n"
        "kube-score | CPU limit is not set | Deployment/agents/*\n"
    )
    assert main(out, rules) == 1
    assert "checkov: CKV_K8S_20: Deployment/agents/research-agent" in capsys.readouterr().out
    rules.write_text(rules.read_text() + "checkov | CKV_K8S_20 | *\n")
    assert main(out, rules) == 0


def test_every_accepted_check_is_explained_in_the_security_doc() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    table = doc[doc.index("## Scanner results") :]
    for _, check, _ in accepted(ROOT / "hack" / "scan-accepted.txt"):
        assert re.search(re.escape(check), table), f"{check} is accepted but not explained"
