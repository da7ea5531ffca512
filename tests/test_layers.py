"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they can fail.

import-linter builds the import graph (relative imports and third-party packages included) and
checks the layers, the independence of the sandbox backends and which packages may import kopf,
lightkube, FastAPI and httpx. The second test plants violations in a copy of the package to
prove the contracts catch them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_are_kept() -> None:
    done = _lint_imports(ROOT, ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_planted_violations_break_the_contracts(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    package = tmp_path / "src" / "agentkube"
    # A relative import upwards, a backend reaching into the other, kopf outside the operator.
    (package / "api" / "planted.py").write_text("from ..sandbox import errors\n")
    (package / "sandbox" / "local" / "planted.py").write_text(
        "from ..kubernetes import rendering\n"
    )
    (package / "runtime" / "planted.py").write_text("import kopf\n")
    done = _lint_imports(tmp_path, tmp_path / "src")
    assert done.returncode != 0
    for contract in ("Layers", "independent", "Only the operator imports kopf"):
        assert f"{contract}" in done.stdout
    assert "4 broken" in done.stdout, done.stdout  # kopf is also a k8s-extra package
    assert "agentkube.api.planted -> agentkube.sandbox.errors" in done.stdout
