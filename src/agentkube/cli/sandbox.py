"""``agentkube sandbox ...``: run code in the sandbox.

``agentkube sandbox exec [--language python|bash] [--timeout SECONDS] [--memory SIZE]
[--cpu CORES] [--json] [FILE | -]`` is a contract other tools depend on: with ``--json`` it prints
exactly one JSON object with the :class:`~agentkube.sandbox.ExecutionResult` fields; it exits 0
whenever the sandbox ran (whatever the code's own exit code), 2 on bad input, 1 when the sandbox
itself cannot run.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from agentkube.cli.checks import write_untrusted
from agentkube.sandbox import requests
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult
from agentkube.sandbox.errors import SandboxRequestError
from agentkube.sandbox.requests import build_limits, parse_language

app = typer.Typer(
    help="Run untrusted code in an isolated, ephemeral sandbox.", no_args_is_help=True
)


def _read_code(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise SandboxRequestError(f"file {source!r} not found (pass a file or - for stdin)")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SandboxRequestError(f"cannot read {source!r}: {e}") from e


def build_request(
    source: str, language: str, timeout: str | None, memory: str | None, cpu: str | None
) -> ExecutionRequest:
    """The request the flags describe; :class:`SandboxRequestError` names any bad one."""
    lang = parse_language(language)
    limits = build_limits(timeout, memory, cpu)
    code = _read_code(source)
    return requests.build_request(code, lang, limits, origin="stdin" if source == "-" else source)


async def _execute(request: ExecutionRequest) -> ExecutionResult:
    from agentkube.sandbox.local import LocalSandbox

    sandbox = LocalSandbox()
    try:
        return await sandbox.execute(request)
    finally:
        await sandbox.aclose()


def _print_human(result: ExecutionResult) -> None:
    write_untrusted(sys.stdout, result.stdout)
    sys.stdout.flush()
    write_untrusted(sys.stderr, result.stderr)
    if result.killed_reason is not None:
        reason, elapsed = result.killed_reason, result.duration_ms
        sys.stderr.write(f"agentkube: sandbox killed ({reason}) after {elapsed:.0f} ms\n")
    elif result.truncated:
        sys.stderr.write("agentkube: output truncated\n")
    sys.stderr.flush()


@app.command("exec")
def exec_(
    source: str = typer.Argument("-", metavar="[FILE | -]", help="code file, or - for stdin"),
    language: str = typer.Option("python", "--language", metavar="python|bash"),
    timeout: str | None = typer.Option(None, "--timeout", metavar="SECONDS"),
    memory: str | None = typer.Option(None, "--memory", metavar="SIZE", help="e.g. 128Mi, 1Gi"),
    cpu: str | None = typer.Option(None, "--cpu", metavar="CORES", help="e.g. 0.5, 500m"),
    json_output: bool = typer.Option(False, "--json", help="print the result as one JSON object"),
) -> None:
    """Run code once in a fresh sandbox; exit 0 whenever the sandbox ran."""
    request = build_request(source, language, timeout, memory, cpu)
    result = asyncio.run(_execute(request))
    if json_output:
        typer.echo(result.model_dump_json())
    else:
        _print_human(result)
