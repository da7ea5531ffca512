"""`agentkube run team.yaml`: a planner and its executors on one machine, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_process import agentkube

EXAMPLE = Path(__file__).parents[2] / "examples" / "team.yaml"
TASK = (Path(__file__).parents[2] / "examples" / "team-task.txt").read_text()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.usefixtures("sandbox")  # bubblewrap must be there: the executors run Python
def test_the_example_team_delegates_offline_and_shows_the_tree(tmp_path: Path) -> None:
    result = agentkube("run", str(EXAMPLE), "--task", TASK, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[@coder]", "338350", "[@reviewer]", "338350"]
    lines = result.stderr.splitlines()
    assert any(line.startswith("→ agent:coder compute it") for line in lines)
    assert "  ✓ python-interpreter" in "\n".join(lines)  # the executor's call, one level in
    assert any(line.startswith("✓ agent:reviewer") for line in lines)


@pytest.mark.usefixtures("sandbox")
def test_json_nests_each_delegated_result_and_its_tool_calls(tmp_path: Path) -> None:
    result = agentkube("run", str(EXAMPLE), "--task", TASK, "--json", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["agent"] == "planner"
    coder, reviewer = outcome["tool_calls"]
    assert (coder["name"], reviewer["name"]) == ("agent:coder", "agent:reviewer")
    assert coder["delegated"]["agent"] == "coder"
    assert coder["delegated"]["output"] == "338350"
    (ran,) = coder["delegated"]["tool_calls"]
    assert ran["name"] == "python-interpreter" and ran["ok"]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "team.yaml"
    path.write_text(text)
    return str(path)


def _agent(name: str, spec: str) -> str:
    return f"apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {{name: {name}}}\nspec: {spec}\n"


@pytest.mark.parametrize(
    ("manifest", "args", "expected"),
    [
        (
            _agent("a", "{model: m, role: planner, tools: ['agent:b']}")
            + "---\n"
            + _agent("b", "{model: m, role: planner, tools: ['agent:a']}"),
            [],
            "2 Agents (a, b) and 2 planners; pass --agent NAME",
        ),
        (
            _agent("a", "{model: m, role: planner, tools: ['agent:ghost']}"),
            [],
            "spec.tools 'agent:ghost' names no Agent of this file",
        ),
        (_agent("a", "{model: m}"), ["--agent", "zed"], "--agent 'zed': no such Agent"),
    ],
)
def test_a_team_file_that_cannot_run_exits_2_with_one_line(
    tmp_path: Path, manifest: str, args: list[str], expected: str
) -> None:
    result = agentkube("run", _write(tmp_path, manifest), "--task", "x", *args, env=_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_agent_picks_the_lead_of_a_file_with_several_agents(tmp_path: Path) -> None:
    manifest = _agent("a", "{model: m}") + "---\n" + _agent("b", "{model: m, systemPrompt: hi}")
    result = agentkube(
        "run", _write(tmp_path, manifest), "--task", "x", "--agent", "b", "--json",
        env=_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["agent"] == "b"
