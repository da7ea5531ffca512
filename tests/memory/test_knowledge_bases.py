"""A KnowledgeBase on one machine: its sources ingested into its collection before the run.

Real parts throughout: the embedded Chroma store, the local wordllama embedder, a real HTTP
server on loopback for URL sources, and the `agentkube run` command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.api.errors import ManifestError
from agentkube.api.loading import parse_documents
from agentkube.api.models import KnowledgeBase
from agentkube.api.teams import select_team
from agentkube.memory.embeddings.local import WordLlamaEmbedder
from agentkube.memory.knowledge_bases import SourceUnreadable, ingest_knowledge_bases
from agentkube.memory.vectors.chroma import EmbeddedChroma
from tests.cli_process import agentkube, wait_ready
from tests.memory.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "knowledge-agent.yaml"
PAGES = {
    "/oncall.md": ("text/markdown", "# On-call\nThe release captain rotates every Tuesday.\n"),
    "/logo.png": ("image/png", "\x89PNG"),
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = PAGES.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body = page[1].encode()
        self.send_response(200)
        self.send_header("content-type", page[0])
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedChroma]:
    store = EmbeddedChroma(tmp_path / "vectors", "default")
    try:
        yield store
    finally:
        await store.aclose()


def knowledge_base(**sources: Any) -> KnowledgeBase:
    return KnowledgeBase.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "KnowledgeBase",
            "metadata": {"name": "handbook"},
            "spec": {"collection": "handbook", "sources": sources},
        }
    )


INLINE = [{"name": "deploys.md", "text": "# Deploys\nThe release captain approves deploys.\n"}]


async def test_inline_documents_and_urls_are_ingested_and_an_unchanged_rerun_writes_nothing(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder, pages: str
) -> None:
    kb = knowledge_base(inline=INLINE, urls=[f"{pages}/oncall.md"])
    warnings: list[str] = []
    (first,) = await ingest_knowledge_bases([kb], store, embedder, warn=warnings.append)
    assert (first.collection, first.report.documents, first.report.added) == ("handbook", 2, 2)
    sources = {str(m["source"]) for m in (await store.all_metadata("handbook")).values()}
    assert sources == {"handbook/deploys.md", f"{pages}/oncall.md"}
    (again,) = await ingest_knowledge_bases([kb], store, embedder, warn=warnings.append)
    assert (again.report.added, again.report.unchanged, again.report.removed) == (0, 2, 0)
    assert warnings == []


async def test_the_collection_mirrors_the_sources_when_one_is_dropped(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder, pages: str
) -> None:
    await ingest_knowledge_bases(
        [knowledge_base(inline=INLINE, urls=[f"{pages}/oncall.md"])], store, embedder, warn=print
    )
    (report,) = await ingest_knowledge_bases(
        [knowledge_base(inline=INLINE)], store, embedder, warn=print
    )
    assert report.report.removed == 1
    sources = {str(m["source"]) for m in (await store.all_metadata("handbook")).values()}
    assert sources == {"handbook/deploys.md"}


@pytest.mark.parametrize(
    ("path", "says"), [("/missing.md", "HTTP 404"), ("/logo.png", "image/png is not text")]
)
async def test_a_url_that_cannot_be_read_fails_in_one_line_and_writes_nothing(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder, pages: str, path: str, says: str
) -> None:
    kb = knowledge_base(inline=INLINE, urls=[f"{pages}{path}"])
    with pytest.raises(SourceUnreadable) as failed:
        await ingest_knowledge_bases([kb], store, embedder, warn=print)
    message = str(failed.value)
    assert message.startswith("KnowledgeBase handbook: spec.sources.urls[0] http://127.0.0.1:")
    assert says in message and "\n" not in message
    assert "handbook" not in {c.name for c in await store.list_collections()}


async def test_config_maps_are_skipped_on_one_machine_with_a_warning(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder
) -> None:
    kb = knowledge_base(inline=INLINE, configMaps=[{"name": "runbooks"}])
    warnings: list[str] = []
    (report,) = await ingest_knowledge_bases([kb], store, embedder, warn=warnings.append)
    assert report.skipped == ("configMap runbooks",)
    (warning,) = warnings
    assert "configMap runbooks skipped on this machine" in warning


async def test_mounted_config_maps_are_read_as_the_job_mounts_them(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    mounted = tmp_path / "configmaps"
    for name, files in {
        "runbooks": ["pager.md", "escalation.txt"],
        "faq": ["a.txt", "b.txt"],
    }.items():
        (mounted / name / "..2026_01_01").mkdir(parents=True)  # the kubelet's own entries
        (mounted / name / "..data").symlink_to("..2026_01_01")
        for file in files:
            (mounted / name / file).write_text(f"{name} {file}: the release captain decides.\n")
    kb = knowledge_base(
        inline=INLINE, configMaps=[{"name": "runbooks"}, {"name": "faq", "keys": ["b.txt"]}]
    )
    (report,) = await ingest_knowledge_bases(
        [kb], store, embedder, warn=pytest.fail, config_maps=mounted
    )
    assert report.skipped == ()
    assert report.report.documents == 4  # inline, both runbooks keys, one faq key
    sources = {str(m["source"]) for m in (await store.all_metadata("handbook")).values()}
    assert sources == {
        "handbook/deploys.md",
        "configmap/runbooks/escalation.txt",
        "configmap/runbooks/pager.md",
        "configmap/faq/b.txt",
    }


async def test_a_key_that_is_not_text_fails_in_one_line(
    store: EmbeddedChroma, embedder: WordLlamaEmbedder, tmp_path: Path
) -> None:
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "logo.png").write_bytes(b"\x89PNG\xff")
    kb = knowledge_base(configMaps=[{"name": "faq"}])
    with pytest.raises(SourceUnreadable, match=r"configMap faq key logo\.png: cannot read"):
        await ingest_knowledge_bases([kb], store, embedder, warn=print, config_maps=tmp_path)


def test_two_knowledge_bases_of_one_file_may_not_share_a_collection() -> None:
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    twin = {**documents[0], "metadata": {"name": "twin"}}
    resources = parse_documents(yaml.safe_dump_all([*documents, twin]), "team.yaml")
    with pytest.raises(ManifestError) as refused:
        select_team(resources, "team.yaml")
    assert str(refused.value) == (
        "team.yaml: KnowledgeBase twin: spec.collection 'release-handbook' is also "
        "KnowledgeBase release-handbook's; give each its own collection"
    )


def test_agentkube_run_ingests_the_files_knowledge_then_answers_from_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OPENAI_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path / "data")
    task = "Who approves a production deploy?"
    done = agentkube("run", str(EXAMPLE), "--task", task, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "2 documents, 2 chunks (2 added, 0 unchanged, 0 removed)" in done.stderr
    answer = json.loads(done.stdout)["output"]
    assert "approval of the on-call release captain" in answer
    assert "release-handbook/deploys.md" in answer.split("From the knowledge base")[1]
    # The same file again: nothing is re-embedded.
    again = agentkube("run", str(EXAMPLE), "--task", task, "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert "(0 added, 2 unchanged, 0 removed)" in again.stderr


def test_agent_serve_ingests_the_files_knowledge_before_it_is_ready(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "OPENAI_"))}
    env["AGENTKUBE_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkube", "agent", "serve", str(EXAMPLE), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, timeout=180)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    line = "KnowledgeBase release-handbook -> collection release-handbook: 2 documents, 2 chunks"
    assert line in stderr.decode()
