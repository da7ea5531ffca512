"""``agentkube run FILE --task TEXT``: run one task with the agent a manifest defines."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from agentkube.cli.checks import printable
from agentkube.cli.options import (
    DEFAULT_MAX_REQUESTS,
    DEFAULT_TASK_TIMEOUT_S,
    DataDir,
    MaxRequests,
    TaskTimeout,
)
from agentkube.errors import UserError

if TYPE_CHECKING:  # the runtime (pydantic-ai, openai) loads only when a run starts
    from agentkube.api.teams import Team
    from agentkube.runtime.agent import RunOutcome
    from agentkube.runtime.building import RuntimeSettings
    from agentkube.runtime.events import RunEvent
    from agentkube.telemetry.recording import SpanRecorder
    from agentkube.telemetry.tracing import Tracing

OFFLINE_MODEL_NAME = "offline"

MAX_TASK_CHARS = 100_000


class Progress:
    """Shows a run's events on stderr: a spinner on a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting", spinner="dots")

    def __call__(self, event: RunEvent) -> None:
        data = event.data
        path: list[str] = data.get("path") or []  # set on a delegated subtask's events
        indent, who = "  " * max(0, len(path) - 1), f"{path[-1]}: " if path else ""
        if event.kind == "run.started" and not path:
            self.console.print(f"[dim]model: {escape(data['model'])}[/]")
        elif event.kind == "model.request":
            self.status.update(f"{escape(who)}waiting for the model")
        elif event.kind == "tool.started":
            self.status.update(f"{escape(who)}running {data['name']}")
            if data["name"].startswith("agent:"):
                task = " ".join(str(data["args"].get("task", "")).split())[:60]
                self.console.print(
                    f"{indent}[cyan]→[/] {escape(data['name'])} [dim]{escape(task)}[/]"
                )
        elif event.kind == "tool.finished":
            mark = "[green]✓[/]" if data["ok"] else "[red]✗[/]"
            self.console.print(
                f"{indent}{mark} {escape(data['name'])} [dim]{data['duration_ms']:.0f} ms[/]"
            )


CONVERSATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_conversation(conversation: str) -> None:
    if not CONVERSATION.match(conversation):
        raise UserError(
            f"--conversation {conversation[:40]!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def read_task(task: str) -> str:
    if task == "-" and sys.stdin is None:
        raise UserError("--task -: standard input is closed; pipe the task in or pass it as text")
    text = sys.stdin.read() if task == "-" else task
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("--task: the task is not UTF-8 text; pass it as UTF-8") from None
    if not text.strip():
        raise UserError("--task is empty; pass the task text, or '-' to read it from stdin")
    if len(text) > MAX_TASK_CHARS:
        raise UserError(f"--task is {len(text)} characters; the limit is {MAX_TASK_CHARS}")
    return text


def _stderr_line(text: str) -> None:
    typer.echo(printable(text), err=True)


async def _run(
    team: Team,
    task: str,
    conversation: str,
    settings: RuntimeSettings,
    progress: Progress | None,
) -> RunOutcome:
    from agentkube.runtime.knowledge_bases import ingest_local_knowledge, summary
    from agentkube.runtime.team import open_team

    note = _stderr_line
    for report in await ingest_local_knowledge(team.knowledge, settings, note):
        note(summary(report))

    async with open_team(team, settings) as runtime:
        if progress is None:
            return await runtime.run(task, conversation=conversation)
        with progress.status:
            return await runtime.run(task, emit=progress, conversation=conversation)


def run(
    file: Annotated[
        Path, typer.Argument(help="manifest with an Agent, or a team of Agents (and Models)")
    ],
    task: Annotated[str, typer.Option("--task", "-t", help="the task; '-' reads it from stdin")],
    agent: Annotated[
        str | None,
        typer.Option(help="the Agent of FILE to give the task (default: the only one or planner)"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"model to use instead of spec.model ('{OFFLINE_MODEL_NAME}' for the demo model)"
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key for the endpoint")] = None,
    data_dir: DataDir = None,
    conversation: Annotated[
        str,
        typer.Option(help="conversation to continue (its history, with memory persistent)"),
    ] = "default",
    max_requests: MaxRequests = DEFAULT_MAX_REQUESTS,
    task_timeout: TaskTimeout = DEFAULT_TASK_TIMEOUT_S,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    trace: Annotated[
        bool, typer.Option("--trace", help="print the run's span tree with timings (stderr)")
    ] = False,
) -> None:
    """Run one task with the agent of FILE (and the agents it delegates to); print the answer."""
    from agentkube.api.teams import load_team

    team = load_team(file, agent)  # refuses a bad file before the model framework loads
    text = read_task(task)
    check_conversation(conversation)

    from agentkube.runtime.agent import TaskBudget
    from agentkube.runtime.building import RuntimeSettings
    from agentkube.sidecar.local import local_rag_front

    settings = RuntimeSettings(
        model=model,
        base_url=base_url,
        api_key=api_key,
        data_dir=data_dir,
        budget=TaskBudget(max_model_requests=max_requests, timeout_s=task_timeout),
        rag_front=local_rag_front,
    )
    err = Console(stderr=True)
    progress = None if json_output else Progress(err)
    recorder, tracing = _tracing(team.lead.metadata.name, trace)
    try:
        outcome = asyncio.run(_run(team, text, conversation, settings, progress))
    finally:
        tracing.flush()
    if json_output:
        typer.echo(json.dumps(outcome.model_dump(mode="json"), ensure_ascii=False))
    else:
        _print_answer(outcome, err)
    if recorder is not None:
        from agentkube.cli.trace_tree import trace_tree
        from agentkube.telemetry.recording import span_tree

        err.print(trace_tree(span_tree(recorder.spans)))


def _tracing(service: str, trace: bool) -> tuple[SpanRecorder | None, Tracing]:
    """Tracing for this run: exported when OTEL_EXPORTER_OTLP_ENDPOINT is set, recorded in
    process for ``--trace``."""
    from agentkube.telemetry.tracing import setup_tracing

    recorder = None
    if trace:
        from agentkube.telemetry.recording import SpanRecorder

        recorder = SpanRecorder()
    return recorder, setup_tracing(service, recorder=recorder)


def _print_answer(outcome: RunOutcome, err: Console) -> None:
    from agentkube.runtime.offline import DISCLAIMER

    if outcome.model_note:
        err.print(f"[yellow]note:[/] {escape(outcome.model_note)}")
    out = Console(highlight=False)
    answer = printable(outcome.output) if out.is_terminal else outcome.output
    out.print(escape(answer), soft_wrap=True)
    suffix = f" ({DISCLAIMER})" if outcome.model == OFFLINE_MODEL_NAME else ""
    err.print(f"[dim]answered by {escape(outcome.model)}{escape(suffix)}[/]")
