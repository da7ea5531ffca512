"""``agentkube sandbox ...``: run code in the sandbox."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run untrusted code in an isolated, ephemeral sandbox.", no_args_is_help=True)
