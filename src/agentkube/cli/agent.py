"""``agentkube agent serve FILE``: the agent's HTTP API (what runs in each agent pod)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the runtime and the server load only when serving starts
    from agentkube.runtime.agent import AgentRuntime

app = typer.Typer(help="Run an agent as a long-lived service.", no_args_is_help=True)


@app.command()
def serve(
    file: Annotated[Path, typer.Argument(help="manifest with one Agent (and optionally Models)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8080,
    model: Annotated[str | None, typer.Option(help="model to use instead of spec.model")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where persistent memory lives")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="tasks run at once")] = 4,
    sandbox_pool: Annotated[
        int, typer.Option(min=0, max=64, help="pre-started sandboxes kept warm")
    ] = 2,
    max_requests: Annotated[
        int, typer.Option(min=1, max=1000, help="model requests one task may make")
    ] = 25,
    task_timeout: Annotated[
        float, typer.Option(min=1, max=86400, help="seconds before a task is cancelled")
    ] = 600,
) -> None:
    """Serve the agent of FILE over HTTP: tasks, events (SSE), health, metrics."""
    from agentkube.api.loading import load_agent

    agent, models = load_agent(file)  # fail fast, exit 2, before anything heavy loads
    from agentkube.cli.checks import check_listen

    check_listen(host, port)

    import uvicorn

    from agentkube.runtime.agent import TaskBudget
    from agentkube.runtime.building import RuntimeSettings, open_runtime
    from agentkube.runtime.server import create_app
    from agentkube.sidecar.local import local_rag_front

    settings = RuntimeSettings(
        model=model,
        base_url=base_url,
        data_dir=data_dir,
        sandbox_pool=sandbox_pool,
        budget=TaskBudget(max_model_requests=max_requests, timeout_s=task_timeout),
        rag_front=local_rag_front,
    )

    @asynccontextmanager
    async def runtime() -> AsyncIterator[AgentRuntime]:
        async with open_runtime(agent, models, settings) as rt:
            yield rt

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(runtime, max_concurrent=concurrency),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
    )
