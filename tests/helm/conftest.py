"""The `helm` fixture (hack/helm/build.sh's binary) and rendering the chart with given values."""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.helm.generate import CHART, ROOT, key, kustomize

JSON = dict[str, Any]
BUILD_SCRIPT = ROOT / "hack" / "helm" / "build.sh"


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm, as `make helm` builds and caches it; the test FAILS when it is not built."""
    located = subprocess.run([BUILD_SCRIPT, "--locate"], capture_output=True, text=True, check=True)
    path = Path(located.stdout.strip())
    if not path.is_file():
        pytest.fail(f"helm is not built ({path}): run `make helm`", pytrace=False)
    return path


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"`helm {' '.join(args)}` exited {result.returncode}:\n{result.stderr}")
    return result


def values_file(tmp_path: Path, values: JSON) -> Path:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template(helm: Path, tmp_path: Path, values: JSON | None = None) -> list[JSON]:
    """`helm template` of the chart (with its CRDs) for these values, as objects."""
    args = ["template", "agentkube", str(CHART), "--include-crds"]
    if values:
        args += ["--values", str(values_file(tmp_path, values))]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


@functools.cache
def _kustomized(path: Path) -> list[JSON]:
    return kustomize(path)


def kustomized(path: Path) -> list[JSON]:
    """`kubectl kustomize PATH` (once per session: deploy/ does not change under the tests)."""
    return copy.deepcopy(_kustomized(path))


def normalised(objects: list[JSON]) -> dict[tuple[str, str, str], JSON]:
    """Objects by kind/namespace/name; the operator's config.yaml parsed (Helm writes it from
    values, so its comments and key order differ from deploy/operator/config.yaml's)."""
    by_key = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "config.yaml" in obj.get("data", {}):
            obj = {
                **obj,
                "data": {**obj["data"], "config.yaml": yaml.safe_load(obj["data"]["config.yaml"])},
            }
        assert key(obj) not in by_key, f"{key(obj)} rendered twice"
        by_key[key(obj)] = obj
    return by_key
