"""Run the real `agentkube` command line as a subprocess, the way a user does."""

from __future__ import annotations

import subprocess
import sys


def agentkube(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agentkube ARGS`` with this interpreter; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "agentkube", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env=env,
        check=False,
    )
