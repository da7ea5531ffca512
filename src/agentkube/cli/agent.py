"""``agentkube agent serve FILE``: the agent's HTTP API (what runs in each agent pod)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentkube.cli.options import (
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TASK_TIMEOUT_S,
    DataDir,
    MaxRequests,
    TaskTimeout,
)

if TYPE_CHECKING:  # the runtime and the server load only when serving starts
    from agentkube.runtime.agent import AgentRuntime
    from agentkube.runtime.delegation import Delegator

app = typer.Typer(help="Run an agent as a long-lived service.", no_args_is_help=True)


@app.command()
def serve(
    file: Annotated[
        Path, typer.Argument(help="manifest with an Agent, or a team of Agents (and Models)")
    ],
    agent_name: Annotated[
        str | None,
        typer.Option(
            "--agent", help="the Agent of FILE to serve (default: the only one or planner)"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8080,
    model: Annotated[str | None, typer.Option(help="model to use instead of spec.model")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint")] = None,
    data_dir: DataDir = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="tasks run at once")] = 4,
    sandbox_pool: Annotated[
        int, typer.Option(min=0, max=64, help="pre-started sandboxes kept warm")
    ] = 2,
    max_requests: MaxRequests = DEFAULT_MAX_REQUESTS,
    task_timeout: TaskTimeout = DEFAULT_TASK_TIMEOUT_S,
    redis: Annotated[
        str | None,
        typer.Option(
            help="Redis URL: tasks go through the agent's shared queue (default "
            "AGENTKUBE_REDIS_URL; unset: tasks stay in this process)",
        ),
    ] = None,
    claim_idle: Annotated[
        float,
        typer.Option(
            min=0.1, max=86400, help="seconds before a silent replica's task is taken over"
        ),
    ] = 660,
    max_deliveries: Annotated[
        int, typer.Option(min=1, max=100, help="deliveries before a task is dead-lettered")
    ] = 5,
    public_url: Annotated[
        str | None,
        typer.Option(help="URL other agents reach this one by (its A2A card; default host:port)"),
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(help="NAME=URL: delegate agent:NAME over A2A to URL (repeatable)"),
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(min=0, max=3600, help="seconds SIGTERM waits for running tasks")
    ] = 30,
) -> None:
    """Serve the agent of FILE over HTTP: tasks, events (SSE), health, metrics."""
    import os
    from dataclasses import replace

    from agentkube.api.teams import load_team

    peers = parse_peers(peer or [])
    # fail fast, exit 2, before anything heavy loads; peers run elsewhere (their own pods)
    team = load_team(file, agent_name, elsewhere=peers)
    redis_url = redis or os.environ.get("AGENTKUBE_REDIS_URL") or None
    from agentkube.cli.checks import check_listen

    check_listen(host, port)

    import uvicorn

    from agentkube.bounded_headers import bounded_headers
    from agentkube.runtime.a2a import A2AMount, A2ATeam
    from agentkube.runtime.agent import TaskBudget
    from agentkube.runtime.building import RuntimeSettings, open_runtime
    from agentkube.runtime.handoff import DurableTasks, open_durable
    from agentkube.runtime.incidents import open_incidents
    from agentkube.runtime.queued_team import open_queued_team
    from agentkube.runtime.server import create_app
    from agentkube.runtime.team import open_team
    from agentkube.sidecar.local import local_rag_front
    from agentkube.telemetry.tracing import setup_tracing

    setup_tracing(team.lead.metadata.name)  # on only with OTEL_EXPORTER_OTLP_ENDPOINT set
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
        # With Redis, each agent records its incidents there: the operator posts them as Events.
        async with (
            open_incidents(redis_url=redis_url, data_dir=data_dir) as incidents,
            runtime_with(replace(settings, incidents=incidents)) as rt,
        ):
            yield rt

    @asynccontextmanager
    async def runtime_with(settings: RuntimeSettings) -> AsyncIterator[AgentRuntime]:
        from agentkube.runtime.knowledge_bases import ingest_local_knowledge, summary

        def note(text: str) -> None:
            typer.echo(text, err=True)

        for report in await ingest_local_knowledge(team.knowledge, settings, note):
            note(summary(report))
        if peers:  # the agents it names run elsewhere: reach them over A2A
            descriptions = {
                n: a.spec.system_prompt or n
                for n, a in team.members.items()
                if a.spec.system_prompt
            }
            a2a = A2ATeam(peers, descriptions=descriptions)
            # With Redis, subtasks for this namespace's agents go through their queues.
            queued: AbstractAsyncContextManager[Delegator] = (
                open_queued_team(a2a, redis_url=redis_url, data_dir=data_dir, targets=peers)
                if redis_url
                else nullcontext(a2a)
            )
            async with (
                queued as delegator,
                open_runtime(
                    team.lead,
                    team.models,
                    settings,
                    delegator=delegator,
                    mcp_servers=team.mcp_servers,
                ) as rt,
            ):
                yield rt
            return
        async with open_team(team, settings) as rt:
            yield rt

    def durable(rt: AgentRuntime) -> AbstractAsyncContextManager[DurableTasks]:
        return open_durable(
            rt,
            redis_url=redis_url,
            data_dir=data_dir,
            claim_idle_s=claim_idle,
            max_deliveries=max_deliveries,
            concurrency=concurrency,
            drain_s=drain_timeout,
        )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(
            runtime,
            max_concurrent=concurrency,
            durable=durable if redis_url else None,
            a2a=A2AMount(agent=team.lead, public_url=public_url or f"http://{host}:{port}"),
        ),
        host=host,
        port=port,
        http=bounded_headers(),
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=int(drain_timeout) + 5,
    )


def parse_peers(values: list[str]) -> dict[str, str]:
    """``--peer NAME=URL`` flags as a mapping; a malformed one is a one-line error."""
    from agentkube.errors import UserError

    peers: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise UserError(f"--peer {value!r}: use NAME=URL, e.g. coder=http://coder:8080")
        peers[name] = url
    return peers
