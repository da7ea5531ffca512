"""``agentkube run --trace``: the run's span tree with timings after the answer, no collector."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.cli_process import agentkube

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sandbox


def test_the_team_run_prints_its_span_tree_after_the_answer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OTEL_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path)
    task = (ROOT / "examples" / "team-task.txt").read_text()
    done = agentkube(
        "run", str(ROOT / "examples" / "team.yaml"), "--task", task, "--model", "offline",
        "--trace", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "invoke_agent" not in done.stdout  # the answer alone on stdout
    tree = done.stderr[done.stderr.index("trace") :]
    lines = tree.splitlines()

    def depth(name: str) -> int:
        line = next(line for line in lines if name in line)
        assert re.search(r"\d+ ms", line), line
        return line.index(name)

    planner, delegation = depth("invoke_agent planner"), depth("execute_tool agent_coder")
    coder, sandbox = depth("invoke_agent coder"), depth("sandbox.execute")
    assert planner < delegation < coder < sandbox  # nested: planner → tool → coder → sandbox
    assert "exit=0" in next(line for line in lines if "sandbox.execute" in line)
