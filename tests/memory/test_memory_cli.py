"""The `agentkube memory` contract, through the real command line (a subprocess, like a user)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings

from agentkube.memory.tenancy import CHROMA_DATABASE, chroma_tenant
from agentkube.memory.vectors.chroma import _close_client
from tests.cli_process import agentkube
from tests.memory.servers import ChromaServer


def memory(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``agentkube memory ARGS`` with no AGENTKUBE_* variable but those given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKUBE_")}
    return agentkube("memory", *args, env={**base, **environ})


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def counts(documents: int, chunks: int, added: int, unchanged: int, removed: int) -> Any:
    return dict(
        documents=documents, chunks=chunks, added=added, unchanged=unchanged, removed=removed
    )


def corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "install.md").write_text(
        "# Install\n\nRun `make setup` to create the virtualenv.\n\n"
        "## Redis\n\nThe state store is Redis; install redis-server from Debian.\n",
        encoding="utf-8",
    )
    (docs / "notes.txt").write_text("Chroma keeps the vectors of every collection.\n", "utf-8")
    (docs / "legacy.txt").write_bytes("ol\xe9 \xe0 tous".encode("latin-1"))
    return docs


def test_ingest_then_search_work_offline_on_the_embedded_store(tmp_path: Path) -> None:
    docs, data = corpus(tmp_path), str(tmp_path / "data")
    first = memory("ingest", "--collection", "guide", "--data-dir", data, "--json", str(docs))
    assert as_json(first) == counts(documents=2, chunks=3, added=3, unchanged=0, removed=0)
    assert f"warning: skipped {docs / 'legacy.txt'}: not UTF-8 text\n" in first.stderr
    again = memory("ingest", "--collection", "guide", "--json", str(docs), AGENTKUBE_DATA_DIR=data)
    assert as_json(again) == counts(documents=2, chunks=3, added=0, unchanged=3, removed=0)

    query = "which database stores state"
    hits = as_json(memory("search", "--collection", "guide", "--top-k", "2", "--data-dir", data,
                          "--json", query))  # fmt: skip
    assert [sorted(hit) for hit in hits] == [["score", "source", "text"]] * 2
    assert "redis-server" in hits[0]["text"] and hits[0]["source"] == str(docs / "install.md")
    assert hits[0]["score"] >= hits[1]["score"]

    listed = as_json(memory("collections", "--json", AGENTKUBE_DATA_DIR=data))
    assert listed == [{"name": "guide", "chunks": 3, "embedder": "wordllama:l2_supercat-256"}]
    assert memory("delete", "--collection", "guide", "--data-dir", data).returncode == 0
    assert as_json(memory("collections", "--json", "--data-dir", data)) == []


def test_prune_removes_a_deleted_document(tmp_path: Path) -> None:
    docs, data = corpus(tmp_path), str(tmp_path / "data")
    ingest = ("ingest", "--collection", "guide", "--data-dir", data, "--json")
    as_json(memory(*ingest, str(docs)))
    (docs / "notes.txt").unlink()
    pruned = as_json(memory(*ingest, "--prune", str(docs)))
    assert pruned == counts(documents=1, chunks=2, added=0, unchanged=2, removed=1)


def test_the_same_commands_work_against_a_chroma_server(
    chroma_server: ChromaServer, tmp_path: Path
) -> None:
    docs, url = corpus(tmp_path), chroma_server.url
    ingested = memory("ingest", "--collection", "served", "--vector-url", url, "--json", str(docs))
    assert as_json(ingested)["added"] == 3
    found = memory(
        "search", "--collection", "served", "--json", "vectors", AGENTKUBE_VECTOR_URL=url
    )
    assert as_json(found)[0]["source"] == str(docs / "notes.txt")
    assert not (tmp_path / "data").exists()


def test_a_store_that_is_down_is_one_line_naming_its_url_and_exit_1(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    done = memory("ingest", "--collection", "guide", str(docs),
                  AGENTKUBE_VECTOR_URL="http://127.0.0.1:9")  # fmt: skip
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [
        "error: vector store at http://127.0.0.1:9 is unavailable (connection refused); "
        "check it is running"
    ]


def test_a_foreign_collection_is_refused_by_name_with_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert memory("collections", "--data-dir", str(data)).returncode == 0  # creates the tenant
    client = chromadb.PersistentClient(
        path=str(data / "vectors"),
        settings=Settings(anonymized_telemetry=False),
        tenant=chroma_tenant("default"),
        database=CHROMA_DATABASE,
    )
    try:
        client.create_collection("theirs", embedding_function=None)
    finally:
        _close_client(client)
    done = memory("search", "--collection", "theirs", "--data-dir", str(data), "anything")
    assert done.returncode == 2
    assert done.stderr.startswith("error: collection 'theirs' was not made by agentkube")
    assert len(done.stderr.splitlines()) == 1


def test_bad_input_is_exit_2_with_one_line(tmp_path: Path) -> None:
    data = str(tmp_path)
    both = memory("search", "--collection", "guide", "--data-dir", data,
                  "--vector-url", "http://x:1", "q")  # fmt: skip
    assert both.returncode == 2
    assert both.stderr == "error: --data-dir and --vector-url exclude each other: pass one\n"
    missing = memory("search", "--collection", "nothing-here", "--data-dir", data, "q")
    assert missing.returncode == 2
    assert "collection 'nothing-here' does not exist" in missing.stderr
    absent = str(tmp_path / "absent")
    no_path = memory("ingest", "--collection", "guide", "--data-dir", data, absent)
    assert no_path.returncode == 2
    assert no_path.stderr.startswith(f"error: {absent} does not exist (pass text or Markdown")


def test_a_fresh_machine_ingests_and_searches_with_no_network_and_nothing_downloaded(
    tmp_path: Path,
) -> None:
    """No network namespace at all, and an empty HOME: Chroma's default embedding model (which
    it would download) and wordllama's hub download must never be reached."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed to run without a network"
    docs, home = corpus(tmp_path), tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKUBE_", "XDG_"))}
    offline = [unshare, "--net", "--map-root-user", sys.executable, "-m", "agentkube", "memory"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*offline, *args], capture_output=True, text=True, timeout=120, check=False,
            env={**base, "HOME": str(home)},
        )  # fmt: skip

    assert as_json(run("ingest", "--collection", "guide", "--json", str(docs)))["added"] == 3
    hits = as_json(run("search", "--collection", "guide", "--json", "virtualenv"))
    assert "make setup" in hits[0]["text"]
    created = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert [p for p in created if not p.startswith(".local/share/agentkube")] == [
        ".local",
        ".local/share",
    ]


KNOWLEDGE_BASE = """\
apiVersion: ai.openvn/v1
kind: KnowledgeBase
metadata: {name: handbook}
spec:
  collection: handbook
  sources:
    inline: [{name: deploys.md, text: "# Deploys\\nThe release captain approves deploys."}]
    configMaps: [{name: runbooks}]
"""


def test_sync_knowledgebase_mirrors_one_knowledge_base_and_writes_its_report(
    tmp_path: Path, chroma_server: ChromaServer
) -> None:
    manifest = tmp_path / "knowledgebase.yaml"
    manifest.write_text(KNOWLEDGE_BASE)
    (tmp_path / "configmaps" / "runbooks").mkdir(parents=True)
    (tmp_path / "configmaps" / "runbooks" / "pager.md").write_text("# Pager\nAnswer in 5 min.\n")
    report = tmp_path / "termination-log"
    argv = ["sync-knowledgebase", str(manifest), "--config-maps", str(tmp_path / "configmaps")]
    env = {"AGENTKUBE_VECTOR_URL": chroma_server.url, "AGENTKUBE_NAMESPACE": "kb-cli"}
    first = memory(*argv, "--report", str(report), **env)
    assert as_json(first) == counts(documents=2, chunks=2, added=2, unchanged=0, removed=0)
    assert json.loads(report.read_text()) == as_json(first)
    (tmp_path / "configmaps" / "runbooks" / "pager.md").unlink()  # mirrored: pruned
    again = memory(*argv, **env)
    assert as_json(again) == counts(documents=1, chunks=1, added=0, unchanged=1, removed=1)


def test_sync_knowledgebase_wants_exactly_one_knowledge_base(tmp_path: Path) -> None:
    manifest = tmp_path / "two.yaml"
    manifest.write_text(KNOWLEDGE_BASE + "---\n" + KNOWLEDGE_BASE.replace("handbook", "other"))
    done = memory("sync-knowledgebase", str(manifest), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == f"error: {manifest}: holds 2 KnowledgeBases; give exactly one\n"
