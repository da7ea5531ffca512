"""`agentkube run` as a user meets it: exit codes and one-line errors for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_process import agentkube

GOOD = "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: plain}\nspec: {model: m}\n"


def _write(tmp_path: Path, text: str, name: str = "agent.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _clean_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("kind: [oops", "not valid YAML"),
        ("apiVersion: v1\nkind: Pod\n", "apiVersion 'v1' is not supported"),
        ("apiVersion: ai.openvn/v1\nkind: Robot\n", "kind 'Robot' is not supported"),
        (GOOD.replace("spec: {model: m}", "spec: {}"), "spec.model: required field is missing"),
        (GOOD.replace("{model: m}", "{model: m, memory: forever}"), "spec.memory"),
        (GOOD.replace("{model: m}", "{model: m, tools: [shell]}"), "unknown tool 'shell'"),
        (
            GOOD.replace("{model: m}", "{model: m, tools: ['agent:helper']}"),
            "'agent:helper' names no Agent of this file",
        ),
    ],
)
def test_bad_manifest_exits_2_with_one_line_naming_file_and_field(
    tmp_path: Path, manifest: str, expected: str
) -> None:
    path = _write(tmp_path, manifest)
    result = agentkube("run", path, "--task", "hi", env=_clean_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert path in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_file_and_empty_task_exit_2(tmp_path: Path) -> None:
    missing = agentkube("run", str(tmp_path / "nope.yaml"), "--task", "hi")
    assert missing.returncode == 2
    assert "nope.yaml: no such file" in missing.stderr
    empty = agentkube("run", _write(tmp_path, GOOD), "--task", "  ")
    assert empty.returncode == 2
    assert "--task is empty" in empty.stderr


def test_bad_flag_exits_2() -> None:
    result = agentkube("run", "x.yaml", "--task", "hi", "--frobnicate")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_unreachable_endpoint_exits_1_with_one_line(tmp_path: Path) -> None:
    result = agentkube(
        "run",
        _write(tmp_path, GOOD),
        "--task",
        "hi",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--json",
        env=_clean_env(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        "error: model endpoint http://127.0.0.1:9/v1 is unreachable"
    )
    assert "Traceback" not in result.stderr


def test_json_output_names_the_offline_model_and_reads_the_task_from_stdin(tmp_path: Path) -> None:
    result = agentkube(
        "run",
        _write(tmp_path, GOOD),
        "--task",
        "-",
        "--json",
        stdin="no code here",
        env=_clean_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == "offline"
    assert "does no reasoning" in out["output"]
    assert "no endpoint is configured for model 'm'" in out["model_note"]
    assert out["tool_calls"] == []


def test_version_prints_the_package_version() -> None:
    from agentkube import __version__

    assert agentkube("version").stdout.strip() == __version__
