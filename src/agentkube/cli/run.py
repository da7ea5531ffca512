"""``agentkube run FILE --task TEXT``: run one task with the agent a manifest defines."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from agentkube.errors import UserError

if TYPE_CHECKING:  # the runtime (pydantic-ai, openai) loads only when a run starts
    from agentkube.runtime.agent import RunOutcome
    from agentkube.runtime.building import RuntimeSettings
    from agentkube.runtime.events import RunEvent

OFFLINE_MODEL_NAME = "offline"

MAX_TASK_CHARS = 100_000


class Progress:
    """Shows a run's events on stderr: a spinner on a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting", spinner="dots")

    def __call__(self, event: RunEvent) -> None:
        data = event.data
        if event.kind == "run.started":
            self.console.print(f"[dim]model: {escape(data['model'])}[/]")
        elif event.kind == "model.request":
            self.status.update("waiting for the model")
        elif event.kind == "tool.started":
            self.status.update(f"running {data['name']}")
        elif event.kind == "tool.finished":
            mark = "[green]✓[/]" if data["ok"] else "[red]✗[/]"
            self.console.print(f"{mark} {data['name']} [dim]{data['duration_ms']:.0f} ms[/]")


def read_task(task: str) -> str:
    text = sys.stdin.read() if task == "-" else task
    if not text.strip():
        raise UserError("--task is empty; pass the task text, or '-' to read it from stdin")
    if len(text) > MAX_TASK_CHARS:
        raise UserError(f"--task is {len(text)} characters; the limit is {MAX_TASK_CHARS}")
    return text


async def _run(
    file: Path, task: str, settings: RuntimeSettings, progress: Progress | None
) -> RunOutcome:
    from agentkube.runtime.building import load_agent, open_runtime

    agent, models = load_agent(file)
    async with open_runtime(agent, models, settings) as runtime:
        if progress is None:
            return await runtime.run(task)
        with progress.status:
            return await runtime.run(task, emit=progress)


def run(
    file: Annotated[Path, typer.Argument(help="manifest with one Agent (and optionally Models)")],
    task: Annotated[str, typer.Option("--task", "-t", help="the task; '-' reads it from stdin")],
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
    data_dir: Annotated[
        Path | None,
        typer.Option(help="where persistent memory lives (default ~/.local/share/agentkube)"),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Run one task with the agent of FILE and print the answer."""
    from agentkube.runtime.building import RuntimeSettings
    from agentkube.runtime.offline import DISCLAIMER

    text = read_task(task)
    settings = RuntimeSettings(model=model, base_url=base_url, api_key=api_key, data_dir=data_dir)
    err = Console(stderr=True)
    outcome = asyncio.run(_run(file, text, settings, None if json_output else Progress(err)))
    if json_output:
        typer.echo(json.dumps(outcome.model_dump(mode="json"), ensure_ascii=False))
        return
    if outcome.model_note:
        err.print(f"[yellow]note:[/] {escape(outcome.model_note)}")
    Console(highlight=False).print(escape(outcome.output), soft_wrap=True)
    suffix = f" ({DISCLAIMER})" if outcome.model == OFFLINE_MODEL_NAME else ""
    err.print(f"[dim]answered by {escape(outcome.model)}{escape(suffix)}[/]")
