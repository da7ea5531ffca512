"""Read manifests (YAML, one or many documents) into typed API objects.

Every failure becomes a :class:`ManifestError` whose message is one line naming the file, the
object, the field and the fix — the CLI prints it as is and exits 2.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agentkube.api.errors import ManifestError
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import API_VERSION, Agent
from agentkube.api.models import KINDS as _MODEL_KINDS
from agentkube.api.models import Resource as _ModelResource

Resource = _ModelResource | MCPServer
KINDS: dict[str, type[Resource]] = {**_MODEL_KINDS, "MCPServer": MCPServer}

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_DEPTH = 64  # real manifests nest a dozen levels; the API server refuses far less than 500


class _ManifestLoader(yaml.SafeLoader):
    """Safe YAML as the API server reads it: duplicate keys are an error (not last-one-wins),
    and nesting is bounded (a 500-level document is refused, not a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                problem = f"nested deeper than {MAX_DEPTH} levels"
                raise yaml.composer.ComposerError(None, None, problem, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_manifest(path: Path) -> str:
    """The file's text, read only if it is a regular file, and never past the size cap."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError(
                f"{path}: not a regular file (a device, FIFO or socket); pass a manifest file"
            )
        data = file.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path}: file is more than the {MAX_MANIFEST_BYTES} bytes a manifest may have; "
            "split it"
        )
    return data.decode("utf-8")


def load_file(path: Path | str) -> list[Resource]:
    """Parse every document of a manifest file."""
    path = Path(path)
    try:
        text = _read_manifest(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file; pass the path of an Agent manifest") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory; pass the path of a manifest file") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from e
    except OSError as e:
        raise ManifestError(f"{path}: cannot read it ({e.strerror})") from e
    return parse_documents(text, str(path))


def parse_documents(text: str, source: str = "<manifest>") -> list[Resource]:
    try:
        documents = [d for d in yaml.load_all(text, Loader=_ManifestLoader) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: not valid YAML ({_yaml_problem(e)}); fix the syntax") from e
    if not documents:
        raise ManifestError(
            f"{source}: no documents; expected an ai.openvn/v1 Agent, Model or MCPServer"
        )
    return [
        parse_object(doc, f"{source}" + (f" (document {i})" if i else ""))
        for i, doc in enumerate(documents)
    ]


def parse_object(doc: Any, source: str) -> Resource:
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{source}: expected a mapping with apiVersion, kind, metadata and spec, "
            f"got {type(doc).__name__}"
        )
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        raise ManifestError(
            f"{source}: apiVersion {api_version!r} is not supported; use apiVersion: {API_VERSION}"
        )
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ManifestError(
            f"{source}: kind {kind!r} is not supported; use one of {', '.join(KINDS)}"
        )
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        name = (
            (doc.get("metadata") or {}).get("name")
            if isinstance(doc.get("metadata"), dict)
            else None
        )
        what = f"{kind} {name}" if name else kind
        raise ManifestError(f"{source}: {what}: {describe(e)}") from None


def single_agent(resources: list[Resource], source: str) -> Agent:
    """The one Agent a file defines (``agentkube run`` runs exactly one)."""
    agents = [r for r in resources if isinstance(r, Agent)]
    if len(agents) != 1:
        names = ", ".join(a.metadata.name for a in agents) or "none"
        raise ManifestError(f"{source}: expected exactly one Agent, found {len(agents)} ({names})")
    return agents[0]


def describe(error: ValidationError) -> str:
    """One sentence for the first validation error, naming the field and the fix."""
    return describe_errors(error.errors(include_url=False))


def describe_errors(errors: Sequence[ErrorDetails]) -> str:
    """:func:`describe` for a list of error details (FastAPI's ``RequestValidationError``);
    never quotes the input beyond 60 characters."""
    first = _sentence(errors[0])
    more = len(errors) - 1
    return first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _sentence(err: ErrorDetails) -> str:
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in err["loc"]).replace(
        ".[", "["
    )
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{field}: required field is missing; add it"
    if kind == "extra_forbidden":
        return f"{field}: unknown field; remove it or check its spelling"
    got = err.get("input")
    shown = (
        f" (got {_short(got)})"
        if isinstance(got, (str, int, float, bool)) and kind != "value_error"
        else ""
    )
    return f"{field}: {msg}{shown}"


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut: an error message never echoes a large input back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)
