"""``agentkube sidecar rag``: the RAG proxy in front of an OpenAI-compatible model.

A contract the operator and users depend on (keep it exact; docs/rag.md)::

    agentkube sidecar rag --upstream URL --collection NAME [--collection NAME ...]
        [--host 127.0.0.1] [--port 8081] [--top-k 4] [--min-score S]
        [--data-dir DIR | --vector-url URL] [--fail-closed] [--template FILE]
        [--max-body-bytes N] [--retrieval-timeout S]

Point clients at ``http://HOST:PORT/v1``. Exit 2 on a bad flag, before anything loads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentkube.api import sidecar_contract as sc
from agentkube.errors import UserError

if TYPE_CHECKING:
    from agentkube.sidecar.retrieval import Retriever

app = typer.Typer(help="Sidecars that run next to an agent (or any app).", no_args_is_help=True)


@app.command()
def rag(
    upstream: Annotated[
        str, typer.Option(help="the model's OpenAI-compatible base URL, e.g. http://m:8000/v1")
    ],
    collection: Annotated[
        list[str], typer.Option(help="a collection to read (repeat for several)")
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = sc.DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port")] = sc.DEFAULT_PORT,
    top_k: Annotated[
        int, typer.Option(min=1, max=50, help="chunks to inject per request")
    ] = sc.DEFAULT_TOP_K,
    min_score: Annotated[
        float | None,
        typer.Option(min=-1.0, max=1.0, help="drop chunks below this cosine similarity"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="the embedded store's directory (AGENTKUBE_DATA_DIR)")
    ] = None,
    vector_url: Annotated[
        str | None, typer.Option(help="a Chroma server (AGENTKUBE_VECTOR_URL)")
    ] = None,
    fail_closed: Annotated[
        bool, typer.Option("--fail-closed", help="answer 503 when retrieval fails")
    ] = False,
    template: Annotated[
        Path | None,
        typer.Option(help="file with the context message; {context} and {collections} marks"),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="largest request body accepted (413 beyond)")
    ] = 16 * 1024 * 1024,
    retrieval_timeout: Annotated[
        float, typer.Option(min=0.05, max=120, help="seconds a retrieval may take")
    ] = 5.0,
) -> None:
    """Serve an OpenAI-compatible API that injects retrieved context into chat completions."""
    from agentkube.memory.settings import MemorySettings
    from agentkube.memory.vectors import check_collection_name
    from agentkube.sidecar.enrichment import DEFAULT_TEMPLATE
    from agentkube.sidecar.forwarding import ProxyConfig

    if data_dir is not None and vector_url is not None:
        raise UserError("--data-dir and --vector-url exclude each other: pass one")
    for name in collection:
        check_collection_name(name)
    text = DEFAULT_TEMPLATE
    if template is not None:
        try:
            text = template.read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"--template {template}: cannot read it ({e.strerror})") from e
    config = ProxyConfig(
        upstream=upstream,
        collections=tuple(dict.fromkeys(collection)),
        top_k=top_k,
        fail_closed=fail_closed,
        template=text,
        max_body_bytes=max_body_bytes,
    )
    settings = MemorySettings.from_env(data_dir=data_dir, vector_url=vector_url)
    if data_dir is not None:  # an explicit data directory means the embedded store
        settings = MemorySettings(data_dir=data_dir, namespace=settings.namespace)

    import uvicorn

    from agentkube.bounded_headers import bounded_headers
    from agentkube.sidecar.proxy import create_app
    from agentkube.sidecar.retrieval import open_knowledge_retriever
    from agentkube.telemetry.tracing import setup_tracing

    setup_tracing("agentkube-rag-proxy")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT set

    @asynccontextmanager
    async def retriever() -> AsyncIterator[Retriever]:
        async with open_knowledge_retriever(
            settings, min_score=min_score, timeout_s=retrieval_timeout, warm=config.collections
        ) as r:
            yield r

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(config, retriever),
        host=host,
        port=port,
        http=bounded_headers(),
        log_level="info",
        access_log=False,
        # The upstream's own date and server headers are relayed; no second pair from uvicorn.
        date_header=False,
        server_header=False,
        proxy_headers=False,  # the proxy does not use client addresses
    )
