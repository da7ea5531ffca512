"""The RAG proxy in process, on a loopback port: what ``spec.rag`` means on one machine.

``agentkube run`` / ``agent serve`` start the very app the sidecar container runs, on
``127.0.0.1`` and a free port, in the runtime's own event loop, and point the model client at
it; the manifest then behaves as it does in a pod. The server installs no signal handlers: the
process that embeds it owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from agentkube.api import sidecar_contract as sc
from agentkube.memory.settings import MemorySettings
from agentkube.sidecar.errors import SidecarFailure
from agentkube.sidecar.forwarding import ProxyConfig
from agentkube.sidecar.retrieval import Retriever, open_knowledge_retriever


@asynccontextmanager
async def serve_in_process(
    config: ProxyConfig,
    open_retriever: Callable[[], AbstractAsyncContextManager[Retriever]],
    *,
    startup_timeout_s: float = 60.0,
) -> AsyncIterator[str]:
    """Run the proxy app until the block ends; yield its ``http://127.0.0.1:PORT/v1``."""
    # Imported here: `agentkube run` loads this module, and most agents have no spec.rag.
    import uvicorn

    from agentkube.sidecar.proxy import create_app

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = create_app(config, open_retriever)
    server = EmbeddedServer(
        uvicorn.Config(
            app,
            host=sc.DEFAULT_HOST,
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="on",
            date_header=False,  # the upstream's are relayed
            server_header=False,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    task.result()  # re-raises why the server stopped
                    raise SidecarFailure("the in-process RAG proxy stopped while starting")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{sc.DEFAULT_HOST}:{port}/v1"
    finally:
        server.should_exit = True
        await asyncio.shield(task)


def local_rag_front(
    config: ProxyConfig, settings: MemorySettings
) -> AbstractAsyncContextManager[str]:
    """The ``rag_front`` of ``agentkube run`` / ``agent serve``: the proxy over ``settings``'
    stores (the embedded one under the data directory unless a vector URL is set)."""
    return serve_in_process(
        config, lambda: open_knowledge_retriever(settings, warm=config.collections)
    )
