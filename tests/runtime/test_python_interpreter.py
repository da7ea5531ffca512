"""python-interpreter through the real local sandbox: offline model, OpenAI path, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.offline import code_blocks, offline_model
from agentkube.runtime.tools import ToolEnvironment
from agentkube.sandbox.local import LocalSandbox
from tests.runtime.helpers import agent_from, runtime_for
from tests.standins.openai_server import Reply, ScriptedModel, ToolCall, create_app
from tests.standins.serving import serve

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sandbox


@pytest.fixture
def model_server() -> Iterator[tuple[ScriptedModel, str]]:
    script = ScriptedModel()
    with serve(create_app(script)) as url:
        yield script, f"{url}/v1"


def test_code_blocks_are_found_in_order_and_other_languages_ignored() -> None:
    task = "a\n```python\nprint(1)\n```\n```bash\nls\n```\n```py\nprint(2)\n```\n```\nx\n```"
    assert code_blocks(task) == ["print(1)", "print(2)"]


async def test_offline_model_runs_each_block_in_the_sandbox(sandbox: LocalSandbox) -> None:
    agent = agent_from("{model: offline, tools: [python-interpreter]}")
    runtime = runtime_for(agent, offline_model(), tools=ToolEnvironment(sandbox=sandbox))
    task = (
        "```python\nimport os\nprint(os.getuid() != 0, 6 * 7)\n```\n"
        "```python\nraise SystemExit(3)\n```"
    )
    outcome = await runtime.run(task)
    first, second = outcome.tool_calls
    assert json.loads(first.result)["stdout"] == "True 42\n"
    assert first.ok
    assert not second.ok
    assert json.loads(second.result)["exit_code"] == 3
    assert outcome.output == "[block 1]\nTrue 42\n[block 2]\nexit code 3"


async def test_offline_model_reports_a_sandbox_limit(sandbox: LocalSandbox) -> None:
    agent = agent_from(
        "{model: offline, tools: [python-interpreter], sandbox: {timeoutSeconds: 1}}"
    )
    async with open_runtime(agent, [], RuntimeSettings(environ={})) as runtime:
        outcome = await runtime.run("```python\nwhile True: pass\n```")
    assert "killed: timeout" in outcome.output


async def test_python_tool_result_reaches_the_model_over_http(
    model_server: tuple[ScriptedModel, str],
) -> None:
    script, base_url = model_server
    script.replies = [
        Reply(tool_calls=[ToolCall("python-interpreter", {"code": "print(sum(range(10)))"})]),
        Reply(text="The sum is 45."),
    ]
    agent = agent_from("{model: standin-model, tools: [python-interpreter]}")
    async with open_runtime(agent, [], RuntimeSettings(environ={}, base_url=base_url)) as runtime:
        outcome = await runtime.run("sum 0..9")
    assert outcome.output == "The sum is 45."
    [call] = outcome.tool_calls
    assert call.args == {"code": "print(sum(range(10)))"}
    tool_message = next(m for m in script.requests[1]["messages"] if m["role"] == "tool")
    assert json.loads(tool_message["content"])["stdout"] == "45\n"


def test_seed_manifest_runs_verbatim_and_json_names_model_and_tool_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTKUBE_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path)
    task = "Squares:\n```python\nprint([n * n for n in range(1, 6)])\n```"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentkube",
            "run",
            str(ROOT / "examples/seed-agent.yaml"),
            "--task",
            task,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["output"] == "[1, 4, 9, 16, 25]"
    assert out["model"] == "offline"
    assert out["agent"] == "research-agent"
    [call] = out["tool_calls"]
    assert call["name"] == "python-interpreter"
    assert call["args"] == {"code": "print([n * n for n in range(1, 6)])"}
    assert json.loads(call["result"])["exit_code"] == 0
    # memory: persistent -> the run is in the store under the data directory.
    assert (tmp_path / "history.sqlite3").exists()


async def test_long_output_reaches_the_model_as_head_and_tail(sandbox: LocalSandbox) -> None:
    agent = agent_from("{model: offline, tools: [python-interpreter]}")
    runtime = runtime_for(agent, offline_model(), tools=ToolEnvironment(sandbox=sandbox))
    outcome = await runtime.run("```python\nprint('a' * 50_000 + 'END')\n```")
    assert outcome.output.startswith("aaaa")
    assert outcome.output.endswith("END")
    assert "chars cut" in outcome.output
    assert len(outcome.output) < 17_000
