"""The project's image (hack/image/build.sh, no Docker), unpacked and run without a cluster.

Its one layer is unpacked as root into a directory, and `agentkube` runs there through chroot in
a private mount namespace (`unshare --mount`): once as root, once as a restricted pod runs it —
uid 65532, the root read-only, tmpfs at /tmp and at AGENTKUBE_DATA_DIR, python-interpreter
through a sandbox gateway (the real app on loopback in front of the local sandbox, with a
static token in a file, as an agent pod has its projected token). The config is checked against
the Dockerfile's, which the image is meant to match. tests/realnode/test_project_image.py runs
it in a real pod.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkube import __version__
from agentkube.gateway.app import create_app
from agentkube.gateway.auth import StaticTokens
from agentkube.sandbox.local import LocalSandbox
from tests.plugins.project_image import ProjectImage
from tests.standins.serving import serve

pytestmark = [pytest.mark.image, pytest.mark.sandbox]
REPO = Path(__file__).resolve().parents[2]
TASK = "Compute the first 10 squares:\n```python\nprint([n * n for n in range(1, 11)])\n```"
ANSWER = "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"
TOKEN = "token-of-the-seed-agent"


@pytest.fixture(scope="session")
def image_config(project_image: ProjectImage) -> dict:
    with tarfile.open(project_image.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        return json.load(outer.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def rootfs(project_image: ProjectImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's layer unpacked with its owners and modes (root only)."""
    if os.geteuid() != 0:
        pytest.fail("unpacking and chrooting into the image needs root", pytrace=False)
    root = tmp_path_factory.mktemp("image") / "rootfs"
    root.mkdir()
    with tarfile.open(project_image.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = outer.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        untar = subprocess.Popen(
            ["tar", "-x", "-p", "--numeric-owner", "-C", str(root)], stdin=subprocess.PIPE
        )
        assert untar.stdin is not None
        with untar.stdin:
            shutil.copyfileobj(layer, untar.stdin, 1 << 20)
        assert untar.wait(timeout=300) == 0
    return root


def _in_image(
    root: Path,
    argv: list[str],
    *,
    setup: str = "",
    user: str | None = None,
    env: dict | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in the image's root, after the shell commands of setup, in a private mount
    namespace (its mounts go with it); the image's config env, plus env."""
    mounts = (
        f"mount -t proc proc {root}/proc && mount --rbind /sys {root}/sys && "
        f"mount --rbind /dev {root}/dev && {setup}"
    )
    userspec = [f"--userspec={user}"] if user else []
    environment = {
        "PATH": "/opt/agentkube/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "AGENTKUBE_DATA_DIR": "/var/lib/agentkube",
        "HOME": "/var/lib/agentkube",
        **(env or {}),
    }
    chroot = ["chroot", *userspec, str(root), "/usr/bin/env", "-i"]
    chroot += [f"{k}={v}" for k, v in environment.items()]
    script = f"{mounts} true && cd / && exec {shlex.join([*chroot, *argv])}"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_image_config_is_the_dockerfiles(image_config: dict) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    final = dockerfile.split("\nFROM ")[-1]  # the last stage is the image
    config = image_config["config"]

    assert config["Entrypoint"] == json.loads(re.search(r"^ENTRYPOINT (.*)$", final, re.M)[1])  # type: ignore[index]
    assert config["Cmd"] == json.loads(re.search(r"^CMD (.*)$", final, re.M)[1])  # type: ignore[index]
    assert config["User"] == re.search(r"^USER (.*)$", final, re.M)[1]  # type: ignore[index]
    assert config["WorkingDir"] == re.search(r"^WORKDIR (.*)$", final, re.M)[1]  # type: ignore[index]
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    env = dict(item.split("=", 1) for item in config["Env"])
    block = re.search(r"^ENV (.*?)(?=^\S)", final, re.M | re.S)[1]  # type: ignore[index]
    for name, value in re.findall(r"(\w+)=(\S+)", block):
        if name == "PATH":
            assert env["PATH"].startswith(value.removesuffix(":$PATH") + ":")
        else:
            assert env[name] == value, name


def test_the_image_runs_agentkube_of_this_tree(rootfs: Path) -> None:
    result = _in_image(rootfs, ["agentkube", "version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_the_image_has_the_user_and_its_home(rootfs: Path) -> None:
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert "agentkube:x:65532:65532::/var/lib/agentkube:/usr/sbin/nologin" in passwd
    home = (rootfs / "var" / "lib" / "agentkube").stat()
    assert (home.st_uid, home.st_gid) == (65532, 65532)
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").iterdir())
    assert not (rootfs / "usr" / "share" / "doc").exists()


@pytest.fixture
def gateway() -> Iterator[str]:
    app = create_app(LocalSandbox(), StaticTokens({TOKEN: "seed-agent"}))
    with serve(app) as url:
        yield url
        time.sleep(0.2)


def test_the_seed_agent_runs_read_only_as_65532_and_answers_with_code_run_by_the_gateway(
    rootfs: Path, gateway: str, tmp_path: Path
) -> None:
    # As a restricted pod: the root read-only, writable tmpfs only where the pod has emptyDirs,
    # the manifest where the ConfigMap would be, the token where the projected one would be.
    etc = f"{rootfs}/etc/agentkube"
    setup = (
        f"mkdir -p {etc} && mount -t tmpfs -o size=1m tmpfs {etc} && "
        f"cp {REPO}/examples/seed-agent.yaml {etc}/agent.yaml && mkdir {etc}/token && "
        f"printf %s {TOKEN} > {etc}/token/token && mount -o remount,ro {etc} && "
        f"mount --rbind {rootfs} {rootfs} && mount -o remount,bind,ro {rootfs} && "
        f"mount -t tmpfs -o size=256m,uid=65532,gid=65532 tmpfs {rootfs}/var/lib/agentkube && "
        f"mount -t tmpfs -o size=64m,mode=1777 tmpfs {rootfs}/tmp && "
    )
    result = _in_image(
        rootfs,
        ["agentkube", "run", "/etc/agentkube/agent.yaml", "--task", TASK],
        setup=setup,
        user="65532:65532",
        env={
            "AGENTKUBE_SANDBOX_URL": gateway,
            "AGENTKUBE_SANDBOX_TOKEN_FILE": "/etc/agentkube/token/token",
        },
    )

    assert result.returncode == 0, result.stderr
    assert ANSWER in result.stdout, result.stdout + result.stderr
    assert "answered by offline" in result.stderr
    assert not list((rootfs / "var" / "lib" / "agentkube").iterdir())  # all went to the tmpfs
