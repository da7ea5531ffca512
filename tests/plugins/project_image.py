"""The `project_image` fixture: the project's image, built without Docker by hack/image/build.sh.

The script caches the image per input (a second build with nothing changed takes well under a
second; `make testcluster` builds it once), so a session pays the cold build (minutes: debootstrap
and the locked dependencies) only after a change to the lock or the script. A failed build FAILS
the test with the end of the script's output; nothing skips.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "image" / "build.sh"
COLD_BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True, kw_only=True)
class ProjectImage:
    reference: str  # localhost/agentkube/agentkube:<key>, the archive's RepoTag
    archive: Path  # a one-layer docker-archive
    key: str


def build_project_image() -> ProjectImage:
    """Build (or find cached) the project's image; fail the test when the build fails."""
    try:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=COLD_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{BUILD_SCRIPT} took over {COLD_BUILD_TIMEOUT_S}s", pytrace=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-15:])
        pytest.fail(f"{BUILD_SCRIPT} exited {result.returncode}:\n{tail}", pytrace=False)
    lines = result.stdout.strip().splitlines()
    if not lines:
        pytest.fail(f"{BUILD_SCRIPT} printed no image.json path", pytrace=False)
    info = json.loads(Path(lines[-1]).read_text())
    image = ProjectImage(
        reference=info["reference"], archive=Path(info["archive"]), key=info["key"]
    )
    if not image.archive.is_file():
        pytest.fail(f"{BUILD_SCRIPT} named {image.archive}, which is not there", pytrace=False)
    return image


@pytest.fixture(scope="session")
def project_image() -> ProjectImage:
    return build_project_image()
