"""Which cgroup hierarchy this machine offers, read from ``/proc/self/mountinfo``.

v2 when a unified hierarchy offers the ``cpu``, ``memory`` and ``pids`` controllers, otherwise v1
with one hierarchy per controller (hybrid machines mount an empty cgroup2 next to v1 — it is
ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agentkube.sandbox.errors import SandboxUnavailable
from agentkube.sandbox.local.cgroups import CONTROLLERS, CgroupHierarchy, HierarchyV1, HierarchyV2


@dataclass(frozen=True)
class _Mount:
    fstype: str
    path: Path
    options: frozenset[str]


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        path = Path(fields[4].replace("\\040", " "))
        mounts.append(_Mount(tail[0], path, frozenset(tail[2].split(","))))
    return mounts


def detect(
    *, parent: str | None = None, mountinfo: str | None = None, name: str = "agentkube"
) -> CgroupHierarchy:
    """Find usable cpu/memory/pids controllers and prepare the parent of execution cgroups.

    ``parent`` is an absolute cgroup path (``/sys/fs/cgroup/my.slice/sandboxes``, v2) or a path
    relative to each hierarchy's root; by default ``agentkube`` at the top of the hierarchy.
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    mounts = _parse_mountinfo(mountinfo)
    for mount in mounts:
        if mount.fstype == "cgroup2" and _v2_has_controllers(mount.path):
            if parent is None:
                target = mount.path / name
            else:
                target = Path(parent) if parent.startswith("/") else mount.path / parent
            if not target.is_relative_to(mount.path):
                raise SandboxUnavailable(f"cgroup parent {target} is outside {mount.path}")
            return HierarchyV2.prepare(mount.path, target)
    v1 = _v1_mounts(mounts)
    if all(c in v1 for c in CONTROLLERS):
        relative = (parent or name).strip("/")
        return HierarchyV1.prepare(v1, relative)
    raise SandboxUnavailable(
        "no cgroup hierarchy offers the cpu, memory and pids controllers "
        f"(mounted: {', '.join(sorted(v1)) or 'none'}); mount cgroup2 or the v1 controllers"
    )


def _v2_has_controllers(path: Path) -> bool:
    try:
        available = set((path / "cgroup.controllers").read_text().split())
    except OSError:
        return False
    return all(c in available for c in CONTROLLERS)


def _v1_mounts(mounts: Iterable[_Mount]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for mount in mounts:
        if mount.fstype != "cgroup":
            continue
        for controller in CONTROLLERS:
            if controller in mount.options and controller not in found:
                found[controller] = mount.path
    return found
