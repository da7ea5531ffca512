"""Hostile and mistaken input: always one line naming the file, flag or field, exit 2, no
traceback, and nothing left behind."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkube.cli.checks import printable, write_untrusted
from tests.cli_process import agentkube

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-agent.yaml"
HEAD = "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: a}\n"


def _one_line_exit_2(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in expected:
        assert text in result.stderr


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("a: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 64 levels"),
        (HEAD + "spec: {model: m, model: n}\n", "line 4: duplicate key 'model'"),
        (
            HEAD + "spec: {model: m, replicas: '5'}\n",
            "spec.replicas: Input should be a valid integer",
        ),
        (HEAD + "spec: {model: m, sandbox: {memory: 1e30x}}\n", "spec.sandbox.memory"),
    ],
)
def test_a_hostile_manifest_is_one_line(tmp_path: Path, manifest: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(manifest)
    _one_line_exit_2(agentkube("run", str(path), "--task", "hi"), str(path), expected)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_as_the_manifest_is_refused_without_reading_it(
    tmp_path: Path, special: str
) -> None:
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    result = agentkube("run", path, "--task", "hi")
    _one_line_exit_2(result, path, "not a regular file")


def test_a_closed_stdin_and_a_non_utf8_task_are_one_line() -> None:
    closed = subprocess.run(
        [sys.executable, "-m", "agentkube", "run", str(SEED), "--task", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _one_line_exit_2(closed, "--task is empty")
    no_stdin = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys, runpy; os.close(0); sys.stdin = None; "
            "sys.argv = ['agentkube', 'run', sys.argv[1], '--task', '-']; "
            "runpy.run_module('agentkube', run_name='__main__')",
            str(SEED),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _one_line_exit_2(no_stdin, "standard input is closed")
    binary = subprocess.run(
        [sys.executable, "-m", "agentkube", "run", str(SEED), "--task", "-"],
        input=b"\xff\xfe not text",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert binary.returncode == 2
    assert b"not UTF-8" in binary.stderr and b"Traceback" not in binary.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_an_unbindable_port_is_one_line(busy_port: int) -> None:
    result = agentkube("agent", "serve", str(SEED), "--port", str(busy_port))
    _one_line_exit_2(result, f"--port {busy_port}: cannot listen", "already in use")
    gateway = agentkube("sandbox", "gateway", "--auth", "static", "--port", str(busy_port))
    _one_line_exit_2(gateway, f"--port {busy_port}")


def test_config_files_and_outputs_that_are_wrong_are_one_line(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_bytes(b"\xff\xfe token name\n")
    result = agentkube(
        "sandbox", "gateway", "--auth", "static", "--token-file", str(token_file), "--port", "0"
    )
    _one_line_exit_2(result, str(token_file), "not UTF-8")
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    _one_line_exit_2(agentkube("crds", "--output-dir", str(a_file)), "is a file")
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    _one_line_exit_2(agentkube("operator", env=env), "no usable Kubernetes configuration")


def test_untrusted_text_cannot_drive_the_terminal() -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07hi\r\nnext\tcol\x9b31m"
    shown = printable(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown and "\r" not in shown
    assert shown == "\\x1b[2J\\x1b]0;pwned\\x07hi\\x0d\nnext\tcol\\x9b31m"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    write_untrusted(terminal, hostile)
    write_untrusted(pipe, hostile)
    assert terminal.getvalue() == shown
    assert pipe.getvalue() == hostile  # a pipe or a file gets the bytes as they were
