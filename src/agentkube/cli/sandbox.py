"""``agentkube sandbox ...``: run code in the sandbox.

``agentkube sandbox exec [--language python|bash] [--timeout SECONDS] [--memory SIZE]
[--cpu CORES] [--json] [FILE | -]`` is a contract other tools depend on: with ``--json`` it prints
exactly one JSON object with the :class:`~agentkube.sandbox.ExecutionResult` fields; it exits 0
whenever the sandbox ran (whatever the code's own exit code), 2 on bad input, 1 when the sandbox
itself cannot run.
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import get_args

import typer
from pydantic import ValidationError

from agentkube.api.loading import describe
from agentkube.api.quantity import parse_bytes, parse_cpu
from agentkube.cli.checks import write_untrusted
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Language, Limits
from agentkube.sandbox.errors import SandboxRequestError

app = typer.Typer(
    help="Run untrusted code in an isolated, ephemeral sandbox.", no_args_is_help=True
)

LANGUAGES: tuple[str, ...] = get_args(Language)


def _language(value: str) -> Language:
    if value not in LANGUAGES:
        raise SandboxRequestError(f"--language {value!r} is not supported: use python or bash")
    return value  # type: ignore[return-value]  # checked against Language just above


def _timeout(value: str | None) -> float:
    if value is None:
        return Limits().timeout_s
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise SandboxRequestError(f"--timeout {value!r} must be a positive number of seconds")
    return seconds


def _memory(value: str | None) -> int:
    if value is None:
        return Limits().memory_bytes
    try:
        return parse_bytes(value)
    except ValueError as e:
        raise SandboxRequestError(f"--memory: {e}") from e


def _cpu(value: str | None) -> float:
    if value is None:
        return Limits().cpu
    try:
        return parse_cpu(value)
    except ValueError as e:
        raise SandboxRequestError(f"--cpu: {e}") from e


def _read_code(source: str) -> str:
    if source == "-":
        code = sys.stdin.read()
        origin = "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise SandboxRequestError(f"file {source!r} not found (pass a file or - for stdin)")
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SandboxRequestError(f"cannot read {source!r}: {e}") from e
        origin = source
    if not code.strip():
        raise SandboxRequestError(f"no code to run: {origin} is empty")
    return code


def build_request(
    source: str, language: str, timeout: str | None, memory: str | None, cpu: str | None
) -> ExecutionRequest:
    """The request the flags describe; :class:`SandboxRequestError` names any bad one."""
    lang = _language(language)
    try:
        limits = Limits(timeout_s=_timeout(timeout), memory_bytes=_memory(memory), cpu=_cpu(cpu))
    except ValidationError as e:
        raise SandboxRequestError(f"bad limit {describe(e)}") from e
    code = _read_code(source)
    try:
        return ExecutionRequest(language=lang, code=code, limits=limits)
    except ValidationError as e:
        raise SandboxRequestError(f"bad request {describe(e)}") from e


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
