"""``agentkube memory ...``: knowledge collections from the command line.

A contract other tools depend on (keep it exact):

* ``agentkube memory ingest --collection NAME [--data-dir DIR | --vector-url URL] [--json]
  [--prune] PATH...`` — with ``--json`` one object: ``documents``, ``chunks``, ``added``,
  ``unchanged``, ``removed``. Progress (rich) on stderr when it is a terminal.
* ``agentkube memory search --collection NAME [--top-k K] [--data-dir DIR | --vector-url URL]
  [--json] QUERY`` — with ``--json`` a list of objects with ``text``, ``source``, ``score``.
* ``agentkube memory collections [--json]`` — ``name``, ``chunks``, ``embedder`` each.
* ``agentkube memory delete --collection NAME``.
* ``agentkube memory sync-knowledgebase MANIFEST [--config-maps DIR] [--report FILE]
  [--data-dir DIR | --vector-url URL]`` — one
  KnowledgeBase's collection made to mirror its sources (pruned), its ConfigMaps read from
  ``DIR/<configmap>/<key>``; prints (and writes to ``FILE``) the ``--json`` object of ``ingest``.
  The operator's ingestion Job runs it (docs/rag.md), ``FILE`` being the termination log.

``AGENTKUBE_VECTOR_URL`` selects a Chroma server, otherwise the embedded store lives under
``--data-dir`` / ``AGENTKUBE_DATA_DIR`` (default ``~/.local/share/agentkube``). Exit 0 on
success, 2 on bad input (a bad name, a foreign collection), 1 when a store is down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from agentkube.errors import UserError

if TYPE_CHECKING:
    from agentkube.memory.embeddings import Embedder
    from agentkube.memory.settings import MemorySettings
    from agentkube.memory.vectors import VectorStore

T = TypeVar("T")

app = typer.Typer(
    help="Knowledge collections: ingest documents, search them, list and delete collections.",
    no_args_is_help=True,
)

Collection = Annotated[str, typer.Option("--collection", help="the collection's name")]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="where the embedded store lives (AGENTKUBE_DATA_DIR)"),
]
VectorUrl = Annotated[
    str | None,
    typer.Option(
        "--vector-url", help="a Chroma server, e.g. http://HOST:8000 (AGENTKUBE_VECTOR_URL)"
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


def _settings(data_dir: Path | None, vector_url: str | None) -> MemorySettings:
    from agentkube.memory.settings import MemorySettings

    if data_dir is not None and vector_url is not None:
        raise UserError("--data-dir and --vector-url exclude each other: pass one")
    settings = MemorySettings.from_env(data_dir=data_dir, vector_url=vector_url)
    if data_dir is not None:  # an explicit data directory means the embedded store
        return MemorySettings(data_dir=data_dir, namespace=settings.namespace)
    return settings


def _with_store(
    settings: MemorySettings, body: Callable[[VectorStore, Embedder], Awaitable[T]]
) -> T:
    async def go() -> T:
        from agentkube.memory.settings import open_embedder, open_vector_store

        store = open_vector_store(settings)
        embedder = await open_embedder(settings)
        try:
            return await body(store, embedder)
        finally:
            await store.aclose()
            await embedder.aclose()

    return asyncio.run(go())


class _IngestProgress:
    """A rich progress bar on a terminal for ingestions worth one; nothing otherwise."""

    def __init__(self, console: Console) -> None:
        from rich.progress import Progress

        self.console = console
        self.bar: Progress | None = None
        self.task: object = None

    def __call__(self, done: int, total: int) -> None:
        if not self.console.is_terminal or total < 200:
            return
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("embedding chunks", total=total)
        self.bar.update(self.task, completed=done)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="files or directories")],
    collection: Collection,
    data_dir: DataDir = None,
    vector_url: VectorUrl = None,
    json_output: JsonOutput = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="remove documents of the collection not in PATH...")
    ] = False,
) -> None:
    """Chunk, embed and store text and Markdown files; unchanged chunks are left alone."""
    from agentkube.memory.ingestion import ingest as run_ingest
    from agentkube.memory.ingestion import read_documents
    from agentkube.memory.vectors import check_collection_name

    check_collection_name(collection)
    settings = _settings(data_dir, vector_url)
    console = Console(stderr=True)
    documents = read_documents(paths, lambda msg: typer.echo(f"warning: {msg}", err=True))
    progress = _IngestProgress(console)
    try:
        report = _with_store(
            settings,
            lambda store, embedder: run_ingest(
                store, embedder, collection, documents, prune=prune, progress=progress
            ),
        )
    finally:
        progress.stop()
    if json_output:
        typer.echo(json.dumps(report.summary()))
    else:
        typer.echo(
            f"{collection}: {report.documents} documents, {report.chunks} chunks "
            f"({report.added} added, {report.unchanged} unchanged, {report.removed} removed)"
        )


@app.command()
def search(
    query: Annotated[str, typer.Argument(metavar="QUERY")],
    collection: Collection,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="how many chunks")] = 5,
    data_dir: DataDir = None,
    vector_url: VectorUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """The chunks of a collection nearest in meaning to QUERY, best first."""
    from agentkube.memory.knowledge import Knowledge

    settings = _settings(data_dir, vector_url)
    passages = _with_store(
        settings,
        lambda store, embedder: Knowledge(store, embedder).search(collection, query, top_k),
    )
    if json_output:
        rows = [{"text": p.text, "source": p.source, "score": round(p.score, 6)} for p in passages]
        typer.echo(json.dumps(rows))
        return
    for passage in passages:
        typer.echo(f"{passage.score:.3f}  {passage.source}")
        typer.echo("    " + passage.text.replace("\n", "\n    "))


@app.command()
def collections(
    data_dir: DataDir = None,
    vector_url: VectorUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """The collections of this namespace: name, chunk count and embedder."""
    from agentkube.memory.settings import open_vector_store

    async def listing() -> list[dict[str, object]]:
        store = open_vector_store(_settings(data_dir, vector_url))
        try:
            infos = await store.list_collections()
        finally:
            await store.aclose()
        return [{"name": i.name, "chunks": i.chunks, "embedder": i.embedder} for i in infos]

    rows = asyncio.run(listing())
    if json_output:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['name']}\t{row['chunks']}\t{row['embedder']}")


@app.command()
def delete(
    collection: Collection,
    data_dir: DataDir = None,
    vector_url: VectorUrl = None,
) -> None:
    """Delete a collection and everything in it."""
    from agentkube.memory.settings import open_vector_store
    from agentkube.memory.vectors import check_collection_name

    check_collection_name(collection)

    async def remove() -> None:
        store = open_vector_store(_settings(data_dir, vector_url))
        try:
            await store.delete_collection(collection)
        finally:
            await store.aclose()

    asyncio.run(remove())
    typer.echo(f"deleted collection {collection}", err=True)


@app.command("sync-knowledgebase")
def sync_knowledgebase(
    manifest: Annotated[Path, typer.Argument(metavar="MANIFEST", help="one KnowledgeBase")],
    config_maps: Annotated[
        Path | None,
        typer.Option("--config-maps", help="where its ConfigMaps are mounted, one folder each"),
    ] = None,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="also write the JSON report to this file")
    ] = None,
    data_dir: DataDir = None,
    vector_url: VectorUrl = None,
) -> None:
    """Make a KnowledgeBase's collection mirror its sources (the operator's ingestion Job)."""
    from agentkube.api.loading import load_file
    from agentkube.api.models import KnowledgeBase
    from agentkube.memory.knowledge_bases import ingest_knowledge_bases

    bases = [r for r in load_file(manifest) if isinstance(r, KnowledgeBase)]
    if len(bases) != 1:
        raise UserError(f"{manifest}: holds {len(bases)} KnowledgeBases; give exactly one")
    settings = _settings(data_dir, vector_url)

    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    reports = _with_store(
        settings,
        lambda store, embedder: ingest_knowledge_bases(
            bases, store, embedder, warn=warn, config_maps=config_maps
        ),
    )
    text = json.dumps(reports[0].report.summary())
    if report_file is not None:
        report_file.write_text(text)
    typer.echo(text)
