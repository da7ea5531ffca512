"""Entry point of the ``agentkube`` command.

Exit codes: 0 success, 1 runtime failure, 2 bad input. Every :class:`AgentkubeError` becomes one
line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from agentkube import __version__
from agentkube.errors import AgentkubeError, UserError

app = typer.Typer(
    name="agentkube",
    help="Kubernetes as the operating system for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the agentkube version."""
    typer.echo(__version__)


@app.command()
def crds(
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="write one file per CRD into this directory instead"),
    ] = None,
) -> None:
    """Print the CustomResourceDefinitions of the ai.openvn/v1 API (kubectl apply -f -)."""
    from agentkube.api.crds import crd_files, render_all

    if output_dir is None:
        typer.echo(render_all(), nl=False)
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in crd_files().items():
            (output_dir / name).write_text(text, encoding="utf-8")
            typer.echo(f"wrote {output_dir / name}", err=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--output-dir {output_dir}: is a file; pass a directory") from None
    except OSError as e:
        raise UserError(f"--output-dir {output_dir}: cannot write there ({e.strerror})") from None


def _register_subcommands() -> None:
    # Imported here, not at the top, so importing this module stays cheap; the heavy layers
    # (pydantic-ai, lightkube, kopf) load inside the commands that use them.
    from agentkube.cli import agent, gateway, mcp, memory, operator, run, sandbox, sidecar, webhook

    app.command("run")(run.run)
    app.add_typer(agent.app, name="agent")
    app.add_typer(sandbox.app, name="sandbox")
    sandbox.app.command("gateway")(gateway.gateway)
    sandbox.app.command("mcp")(mcp.serve)
    app.command("operator")(operator.command)
    app.add_typer(memory.app, name="memory")
    app.add_typer(sidecar.app, name="sidecar")
    sidecar.app.command("webhook")(webhook.serve)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    _register_subcommands()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Standalone mode lets typer report usage errors (exit 2) and --help itself.
        app(args=args, prog_name="agentkube", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except AgentkubeError as e:
        typer.echo(f"error: {e}", err=True)
        return 2 if isinstance(e, UserError) else 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
