"""`agentkube sandbox gateway`: bad flags are one line and exit 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.cli.main import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "docker"], "--backend 'docker' is not known: use local or kubernetes"),
        (["--auth", "basic"], "--auth 'basic' is not known: use tokenreview or static"),
        (["--auth", "static"], "--auth static needs --token-file"),
        (["--node-selector", "pool"], "--node-selector 'pool' must look like key=value"),
        (["--toleration", "pool=sandbox"], "--toleration 'pool=sandbox' must look like"),
    ],
)
def test_bad_gateway_flag_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "gateway", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_token_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "tokens"
    assert main(["sandbox", "gateway", "--auth", "static", "--token-file", str(missing)]) == 2
    assert f"cannot read the token file {missing}" in capsys.readouterr().err


def test_missing_kubeconfig_for_tokenreview_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "kubeconfig"
    assert main(["sandbox", "gateway", "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no usable Kubernetes configuration" in err and "--auth static" in err
