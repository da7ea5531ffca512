"""What the benchmark scripts share: percentiles and a kubectl that fails with its message."""

from __future__ import annotations

import subprocess
from pathlib import Path


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    """Run kubectl against ``kubeconfig``; exit the benchmark with kubectl's error if it fails."""
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result.stdout
