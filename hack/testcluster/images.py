"""Container images for the real node without Docker: one directory tree becomes one image.

`build-node.sh` runs this as `python3 -m hack.testcluster.images ROOTFS ARCHIVE REF -- CMD...`:
ROOTFS (a debootstrap tree, or a directory holding just the pause binary) is written as a single
uncompressed layer into a docker-archive tar (manifest.json, the image config, the layer) that
`ctr -n k8s.io image import` loads. Standard library only; entries are written in sorted order
with the files' own owners and modes, so the layer is exactly the tree.
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
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def write_image(rootfs: Path, archive: Path, ref: str, command: list[str]) -> str:
    """Write rootfs as a one-layer image tagged ref into archive; return the layer digest."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        layer = Path(tmp) / "layer.tar"
        _write_layer(rootfs, layer)
        diff_id = _sha256(layer)
        config = json.dumps(_config(diff_id, command), sort_keys=True).encode()
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


def _write_layer(rootfs: Path, layer: Path) -> None:
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(rootfs):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(rootfs).as_posix())
            if info is None:  # a socket: no place in an image
                continue
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


def _config(diff_id: str, command: list[str]) -> dict[str, object]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": command},
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
    parser.add_argument("command", nargs="+", help="the image's default command")
    args = parser.parse_args(argv)
    write_image(args.rootfs, args.archive, args.ref, args.command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
