"""Flags `agentkube run` and `agentkube agent serve` share: one declaration, one meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_MAX_REQUESTS = 25
DEFAULT_TASK_TIMEOUT_S = 600.0

MaxRequests = Annotated[int, typer.Option(min=1, max=1000, help="model requests one task may make")]
TaskTimeout = Annotated[
    float, typer.Option(min=1, max=86400, help="seconds before a task is cancelled")
]
DataDir = Annotated[
    Path | None,
    typer.Option(help="where persistent memory lives (default ~/.local/share/agentkube)"),
]
