"""`spec.rag` on one machine: the same enrichment in process, for a real endpoint and offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentkube.api import sidecar_contract as sc
from agentkube.memory.settings import MemorySettings
from agentkube.runtime.building import RuntimeSettings, open_runtime
from agentkube.runtime.errors import ModelConfigError
from agentkube.sidecar.local import local_rag_front
from tests.cli_process import agent_service, agentkube, finished_task
from tests.runtime.helpers import agent_from
from tests.sidecar.conftest import COLLECTION
from tests.standins.openai_server import Reply, ScriptedModel

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Which port does the agentkube operator listen on?"


def _environ(settings: MemorySettings) -> dict[str, str]:
    return {"AGENTKUBE_DATA_DIR": str(settings.data_dir)}


async def test_a_run_against_an_endpoint_sends_the_retrieved_context_with_the_question(
    embedded_knowledge: MemorySettings, model: tuple[ScriptedModel, str]
) -> None:
    script, base_url = model
    script.replies = [Reply(text="7443 [1]")]
    agent = agent_from(f"{{model: standin-model, rag: {{collection: {COLLECTION}, topK: 1}}}}")
    settings = RuntimeSettings(
        environ=_environ(embedded_knowledge), base_url=base_url, rag_front=local_rag_front
    )
    async with open_runtime(agent, [], settings) as runtime:
        outcome = await runtime.run(QUESTION)
    assert outcome.output == "7443 [1]"
    (request,) = script.requests
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "system", "user"]  # instructions, then the context, then the ask
    assert "[1] source: /docs/operator.md" in request["messages"][1]["content"]


async def test_an_endpoint_with_rag_but_no_proxy_to_run_is_refused_in_one_line(
    embedded_knowledge: MemorySettings, model: tuple[ScriptedModel, str]
) -> None:
    agent = agent_from(f"{{model: standin-model, rag: {{collection: {COLLECTION}}}}}")
    settings = RuntimeSettings(environ=_environ(embedded_knowledge), base_url=model[1])
    with pytest.raises(ModelConfigError, match=r"spec\.rag needs the RAG proxy"):
        async with open_runtime(agent, [], settings):
            pass


async def test_with_a_sidecar_in_front_the_runtime_leaves_enrichment_to_it(
    embedded_knowledge: MemorySettings, model: tuple[ScriptedModel, str]
) -> None:
    script, base_url = model
    script.replies = [Reply(text="ok")]
    agent = agent_from(f"{{model: standin-model, rag: {{collection: {COLLECTION}}}}}")
    environ = {**_environ(embedded_knowledge), sc.ENV_RAG_SIDECAR: "http://127.0.0.1:8081"}
    async with open_runtime(agent, [], RuntimeSettings(environ=environ, base_url=base_url)) as rt:
        await rt.run(QUESTION)
    assert [m["role"] for m in script.requests[0]["messages"]] == ["system", "user"]


def test_the_readme_flow_ingest_then_ask_the_offline_agent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OPENAI_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path / "data")
    ingested = agentkube(
        "memory", "ingest", "--collection", "agentkube-handbook", "--json",
        str(ROOT / "examples" / "knowledge"), env=env,
    )  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["documents"] == 3
    task = "How much memory does a sandbox get?"
    done = agentkube(
        "run", str(ROOT / "examples" / "rag-agent.yaml"), "--task", task, "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)["output"]
    assert "128 MiB of memory" in answer
    assert "sandboxes.md" in answer.split("From the knowledge base")[1]


def test_agent_serve_with_rag_enriches_through_the_proxy_it_runs_in_process(
    embedded_knowledge: MemorySettings, model: tuple[ScriptedModel, str], tmp_path: Path
) -> None:
    script, base_url = model
    script.replies = [Reply(text="Orca [1]")]
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: reader}\n"
        f"spec: {{model: standin-model, rag: {{collection: {COLLECTION}, topK: 1}}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OPENAI_"))}
    env["AGENTKUBE_DATA_DIR"] = str(embedded_knowledge.data_dir)
    with agent_service(str(manifest), "--base-url", base_url, env=env) as url:
        view = finished_task(url, QUESTION)
    assert view["status"] == "succeeded" and view["result"]["output"] == "Orca [1]"
    (request,) = script.requests
    assert "[1] source: /docs/operator.md" in request["messages"][1]["content"]
