"""Finding the control-plane binaries that `build.sh` caches per pinned version.

`build.sh --locate` owns the cache key (a hash of the Go modules and the script), so the Python
side never guesses it: it asks, then checks the directory is complete.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingPrerequisite

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
NODE_BUILD_SCRIPT = HERE / "build-node.sh"
BUILD_COMMAND = "make testcluster"  # what a person runs; it calls hack/testcluster/build.sh
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_COMPONENTS = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runsc",
    "containerd-shim-runsc-v1",
    "kube-router",
    "coredns",
    "python.tar",
    "redis.tar",
    "pause.tar",
    "coredns.tar",
    "images.json",
)


@dataclass(frozen=True, kw_only=True)
class Binaries:
    """Paths of one cached, complete build."""

    bin_dir: Path

    def path(self, component: str) -> Path:
        return self.bin_dir / component

    @property
    def kwok_stages(self) -> Path:
        return self.bin_dir / "kwok-stages.yaml"


@dataclass(frozen=True, kw_only=True)
class NodeBinaries:
    """Paths of one cached, complete build of the real node (`build-node.sh`)."""

    bin_dir: Path

    def path(self, component: str) -> Path:
        return self.bin_dir / component

    @property
    def images(self) -> dict[str, str]:
        """Image name (python, pause, coredns) -> the reference it is imported as."""
        refs: dict[str, str] = json.loads((self.bin_dir / "images.json").read_text())
        return refs

    def image_archive(self, image: str) -> Path:
        """The docker-archive of image (python, pause, coredns), for `ctr image import`."""
        return self.bin_dir / f"{image}.tar"


def locate() -> Binaries:
    """The cached build for this checkout, or MissingPrerequisite naming the build command."""
    bin_dir = _locate(BUILD_SCRIPT, COMPONENTS, "control-plane binaries", "about 15 minutes")
    return Binaries(bin_dir=bin_dir)


def locate_node() -> NodeBinaries:
    """The cached real-node build for this checkout, or MissingPrerequisite naming the command."""
    bin_dir = _locate(NODE_BUILD_SCRIPT, NODE_COMPONENTS, "real-node binaries", "about 10 minutes")
    return NodeBinaries(bin_dir=bin_dir)


def _locate(script: Path, components: tuple[str, ...], what: str, cold: str) -> Path:
    try:
        out = subprocess.run(
            ["bash", str(script), "--locate"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise MissingPrerequisite(
            f"cannot locate the test cluster's {what} ({script} --locate failed: {e}); "
            f"run `{BUILD_COMMAND}`."
        ) from e
    bin_dir = Path(out.stdout.strip())
    missing = [c for c in components if not (bin_dir / c).is_file()]
    if missing or not (bin_dir / ".complete").is_file():
        raise MissingPrerequisite(
            f"the {what} for this checkout are not built "
            f"(missing in {bin_dir}: {', '.join(missing) or 'the .complete marker'}); "
            f"run `{BUILD_COMMAND}` ({cold} on 2 cores the first time, then cached)."
        )
    return bin_dir


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a tool on PATH, or MissingPrerequisite with the install hint."""
    found = shutil.which(name)
    if found is None:
        raise MissingPrerequisite(f"`{name}` is not on PATH; {hint}.")
    return found
