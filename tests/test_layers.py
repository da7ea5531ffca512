"""Dependencies point one way: cli -> operator/runtime -> sandbox/memory -> api.

A small import contract (in the spirit of import-linter), read from the source with ``ast`` so a
violation names the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "agentkube"

# layer -> the agentkube layers it must never import
FORBIDDEN: dict[str, set[str]] = {
    "api": {"cli", "operator", "runtime", "sandbox", "memory"},
    "memory": {"cli", "operator", "runtime", "sandbox"},
    "sandbox": {"cli", "operator", "runtime", "memory"},
    "runtime": {"cli", "operator"},
    "operator": {"cli", "runtime"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_layers_below_it(layer: str) -> None:
    violations = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "agentkube" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                violations.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not violations, "\n".join(violations)
