"""``agentkube sandbox exec``: the exact command-line contract other tools depend on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_process import agentkube

pytestmark = pytest.mark.sandbox

RESULT_FIELDS = {
    "exit_code",
    "stdout",
    "stderr",
    "duration_ms",
    "killed_reason",
    "truncated",
    "files",
}


def test_json_output_is_one_object_with_the_result_fields() -> None:
    done = agentkube("sandbox", "exec", "--json", "-", stdin="print('hi')\nraise SystemExit(3)\n")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == RESULT_FIELDS
    assert (result["exit_code"], result["stdout"], result["killed_reason"]) == (3, "hi\n", None)


def test_a_file_runs_with_the_given_language_and_limits(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("echo from-bash\nsleep 30\n")
    done = agentkube(
        "sandbox", "exec", "--language", "bash", "--timeout", "1", "--memory", "64Mi",
        "--cpu", "500m", "--json", str(script),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stdout"] == "from-bash\n"
    assert result["killed_reason"] == "timeout"
    assert result["exit_code"] is None


def test_without_json_the_code_output_passes_through() -> None:
    done = agentkube(
        "sandbox", "exec", stdin="import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")


def test_reading_from_stdin_is_the_default() -> None:
    done = agentkube("sandbox", "exec", "--json", stdin="print(6 * 7)")
    assert json.loads(done.stdout)["stdout"] == "42\n"


@pytest.mark.parametrize(
    ("args", "stdin", "names"),
    [
        (["--language", "ruby", "-"], "puts 1", "--language"),
        (["--memory", "lots", "-"], "print(1)", "--memory"),
        (["--memory", "1Mi", "-"], "print(1)", "memory"),
        (["--cpu", "-1", "-"], "print(1)", "--cpu"),
        (["--timeout", "-5", "-"], "print(1)", "--timeout"),
        (["--timeout", "soon", "-"], "print(1)", "--timeout"),
        (["/no/such/file.py"], "", "/no/such/file.py"),
        (["-"], "   \n", "empty"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem_and_exit_2(
    args: list[str], stdin: str, names: str
) -> None:
    done = agentkube("sandbox", "exec", *args, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert names in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--memory", "1e30"], "limits.memory_bytes: asked for 10000"),
        (["--cpu", "8"], "limits.cpu: asked for 8, the sandbox policy allows at most 2"),
        (["--timeout", "3000"], "limits.timeout_s"),
    ],
)
def test_limits_above_the_local_policy_are_one_line_exit_2(flags: list[str], named: str) -> None:
    result = agentkube("sandbox", "exec", *flags, "-", stdin="print(1)")
    assert result.returncode == 2
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
