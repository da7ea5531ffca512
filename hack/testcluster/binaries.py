"""Finding the control-plane binaries that `build.sh` caches per pinned version.

`build.sh --locate` owns the cache key (a hash of the Go modules and the script), so the Python
side never guesses it: it asks, then checks the directory is complete.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingPrerequisite

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BUILD_COMMAND = "make testcluster"  # what a person runs; it calls hack/testcluster/build.sh
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True, kw_only=True)
class Binaries:
    """Paths of one cached, complete build."""

    bin_dir: Path

    def path(self, component: str) -> Path:
        return self.bin_dir / component

    @property
    def kwok_stages(self) -> Path:
        return self.bin_dir / "kwok-stages.yaml"


def locate() -> Binaries:
    """The cached build for this checkout, or MissingPrerequisite naming the build command."""
    try:
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--locate"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise MissingPrerequisite(
            f"cannot locate the test cluster binaries ({BUILD_SCRIPT} --locate failed: {e}); "
            f"run `{BUILD_COMMAND}`."
        ) from e
    bin_dir = Path(out.stdout.strip())
    missing = [c for c in COMPONENTS if not (bin_dir / c).is_file()]
    if missing or not (bin_dir / ".complete").is_file():
        raise MissingPrerequisite(
            f"the control-plane binaries for this checkout are not built "
            f"(missing in {bin_dir}: {', '.join(missing) or 'the .complete marker'}); "
            f"run `{BUILD_COMMAND}` (about 15 minutes on 2 cores the first time, then cached)."
        )
    return Binaries(bin_dir=bin_dir)


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a tool on PATH, or MissingPrerequisite with the install hint."""
    found = shutil.which(name)
    if found is None:
        raise MissingPrerequisite(f"`{name}` is not on PATH; {hint}.")
    return found
