"""`agentkube sidecar rag` as the operator and users run it: the contract's flags, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from agentkube.api import sidecar_contract as sc
from agentkube.memory.settings import MemorySettings
from tests.cli_process import agentkube, wait_ready
from tests.memory.servers import free_port
from tests.sidecar.conftest import COLLECTION
from tests.standins.openai_server import Reply, ScriptedModel


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--upstream", "ftp://m", "--collection", "docs"], "--upstream 'ftp://m' must be an http"),
        (["--upstream", "http://m", "--collection", "a"], "collection name 'a' is invalid"),
        (
            [
                "--upstream",
                "http://m",
                "--collection",
                "kb",
                "--data-dir",
                "/x",
                "--vector-url",
                "http://v",
            ],
            "--data-dir and --vector-url exclude each other",
        ),
        (
            ["--upstream", "http://m", "--collection", "docs", "--template", "/nonexistent"],
            "cannot read it",
        ),
    ],
)
def test_bad_flags_are_one_line_errors_with_exit_2(args: list[str], expected: str) -> None:
    done = agentkube("sidecar", "rag", *args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_the_command_serves_the_contract_in_front_of_a_model(
    embedded_knowledge: MemorySettings, model: tuple[ScriptedModel, str]
) -> None:
    script, upstream = model
    script.replies = [Reply(text="Orca")]
    port = free_port()
    args = proxy_args(upstream, port, embedded_knowledge.data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKUBE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkube", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k") as oa:
            raw = oa.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": "What is the operator called?"}]
            )
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert raw.parse().choices[0].message.content == "Orca"
    assert raw.headers[sc.HEADER_CHUNKS] == "2"
    assert "Orca" in script.requests[0]["messages"][0]["content"]


def proxy_args(upstream: str, port: int, data_dir: Path) -> list[str]:
    args = sc.proxy_args(upstream=upstream, collections=[COLLECTION], top_k=2, port=port)
    return [*args, "--data-dir", str(data_dir)]
