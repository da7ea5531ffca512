"""Container images for the real node without Docker: one directory tree becomes one image.

`build-node.sh` runs this as `python3 -m hack.testcluster.images ROOTFS ARCHIVE REF -- CMD...`:
ROOTFS (a debootstrap tree, or a directory holding just the pause binary) is written as a single
uncompressed layer into a docker-archive tar (manifest.json, the image config, the layer) that
`ctr -n k8s.io image import` loads. Standard library only; entries are written in sorted order
with the files' own owners and modes, so the layer is exactly the tree.

hack/image/build.sh writes the project's own image with the same code and the rest of an image
config (`--entrypoint`, `--env`, `--user`, `--workdir`, `--expose`), and `--mtime EPOCH` clamps
every entry's modification time so that the same tree gives the same layer digest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """The runtime part of an image config beyond its command (the OCI `config` object)."""

    entrypoint: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [PATH_ENV])  # NAME=VALUE
    user: str | None = None  # uid:gid
    workdir: str | None = None
    exposed_ports: list[str] = field(default_factory=list)  # 8080/tcp
    mtime: int | None = None  # clamp every entry's mtime to this (SOURCE_DATE_EPOCH)


def write_image(
    rootfs: Path,
    archive: Path,
    ref: str,
    command: list[str],
    settings: ImageConfig | None = None,
) -> str:
    """Write rootfs as a one-layer image tagged ref into archive; return the layer digest."""
    settings = settings or ImageConfig()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        layer = Path(tmp) / "layer.tar"
        _write_layer(rootfs, layer, settings.mtime)
        diff_id = _sha256(layer)
        config = json.dumps(_config(diff_id, command, settings), sort_keys=True).encode()
        config_name = f"{hashlib.sha256(config).hexdigest()}.json"
        layer_name = f"{diff_id}/layer.tar"
        manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
            _add_bytes(out, "manifest.json", json.dumps(manifest).encode())
            _add_bytes(out, config_name, config)
            out.add(layer, arcname=layer_name)
        partial.replace(archive)
    return f"sha256:{diff_id}"


def _write_layer(rootfs: Path, layer: Path, mtime: int | None) -> None:
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(rootfs):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(rootfs).as_posix())
            if info is None:  # a socket: no place in an image
                continue
            if mtime is not None:
                info.mtime = min(int(info.mtime), mtime)  # an int: no sub-second pax time
            if info.isreg():
                with path.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


def _walk(root: Path) -> Iterator[Path]:
    """Every entry under root (not root itself), parents before children, in sorted order;
    symlinks are entries, never followed."""
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(directory)
        for name in sorted([*dirs, *files]):
            yield base / name


def _config(diff_id: str, command: list[str], settings: ImageConfig) -> dict[str, object]:
    config: dict[str, object] = {"Env": settings.env, "Cmd": command}
    if settings.entrypoint:
        config["Entrypoint"] = settings.entrypoint
    if settings.user:
        config["User"] = settings.user
    if settings.workdir:
        config["WorkingDir"] = settings.workdir
    if settings.exposed_ports:
        config["ExposedPorts"] = {port: {} for port in settings.exposed_ports}
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "hack/testcluster/build-node.sh"}],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hack.testcluster.images")
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("archive", type=Path)
    parser.add_argument("ref", help="the image reference, e.g. localhost/agentkube/python:KEY")
    parser.add_argument("command", nargs="+", help="the image's default command (after `--`)")
    parser.add_argument("--entrypoint", action="append", default=[], help="one argument each")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE (default: PATH)")
    parser.add_argument("--user", help="uid:gid the image runs as")
    parser.add_argument("--workdir", help="the working directory")
    parser.add_argument("--expose", action="append", default=[], help="a port, e.g. 8080/tcp")
    parser.add_argument("--mtime", type=int, help="clamp modification times (SOURCE_DATE_EPOCH)")
    args = parser.parse_args(argv)
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: write NAME=VALUE")
    settings = ImageConfig(
        entrypoint=args.entrypoint,
        env=args.env or [PATH_ENV],
        user=args.user,
        workdir=args.workdir,
        exposed_ports=args.expose,
        mtime=args.mtime,
    )
    write_image(args.rootfs, args.archive, args.ref, args.command, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
