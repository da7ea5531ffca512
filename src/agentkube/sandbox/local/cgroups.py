"""One cgroup per execution: CPU, memory and process limits, accounting, and a reliable kill.

Both cgroup versions are supported (:mod:`.cgroup_detection` finds which one a machine offers).

The runner creates the cgroup, and the sandbox's first process writes ``0`` (itself) into each
``cgroup.procs`` *before* it execs bubblewrap, so nothing the sandbox forks can start outside it.
Killing goes through the cgroup (``cgroup.kill`` on v2, otherwise SIGKILL to every member until it
is empty; the sandbox's pid-1 is a member, and its death takes its whole pid namespace down).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agentkube.sandbox.contract import Limits
from agentkube.sandbox.errors import SandboxFailure, SandboxUnavailable

CONTROLLERS = ("cpu", "memory", "pids")
CPU_PERIOD_US = 100_000
_FIX_HINT = (
    "run agentkube as root, or delegate a writable cgroup and pass its path as "
    "LocalSandbox(cgroup_parent=...) or AGENTKUBE_SANDBOX_CGROUP"
)


@dataclass(frozen=True, kw_only=True)
class CgroupEvents:
    """What the kernel counted for one execution."""

    oom_kills: int = 0
    pids_limit_hits: int = 0


class ExecutionCgroup(Protocol):
    """The cgroup (or set of v1 cgroups) that contains exactly one execution."""

    name: str

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Files a process writes ``0`` into to join this cgroup."""
        ...

    def set_limits(self, limits: Limits) -> None: ...

    def events(self) -> CgroupEvents: ...

    def members(self) -> list[int]: ...

    def send_kill(self) -> None:
        """SIGKILL every member now, without waiting for them to die."""
        ...

    async def kill(self) -> None:
        """Kill every member; returns once the cgroup is empty."""
        ...

    async def remove(self) -> None:
        """Kill what is left and delete the cgroup."""
        ...


class CgroupHierarchy(Protocol):
    """Where execution cgroups are made."""

    version: int

    def create(self, name: str, limits: Limits) -> ExecutionCgroup: ...

    def existing(self) -> list[str]:
        """Names of the execution cgroups currently present under the parent."""
        ...

    def remove_if_empty(self, name: str) -> None:
        """Delete a left-over execution cgroup unless processes still live in it."""
        ...


def _rmdir_quietly(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.rmdir()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_counters(path: Path) -> dict[str, int]:
    """Parse a ``key value`` per line file (memory.events, pids.events, memory.oom_control)."""
    counters: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return counters
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            counters[key] = int(value)
    return counters


def _read_pids(procs: Path) -> list[int]:
    try:
        return [int(p) for p in procs.read_text().split()]
    except FileNotFoundError:
        return []


def _signal_members(procs: Path) -> None:
    for pid in _read_pids(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _kill_members(procs: Path, kill_file: Path | None = None) -> None:
    """SIGKILL everything in a cgroup until it is empty (a fork bomb cannot outrun pids.max)."""
    for attempt in range(400):
        pids = _read_pids(procs)
        if not pids:
            return
        if kill_file is not None and attempt == 0:
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        else:
            _signal_members(procs)
        await asyncio.sleep(0.001 if attempt < 10 else 0.01 if attempt < 50 else 0.025)
    raise SandboxFailure(f"processes {_read_pids(procs)} in {procs.parent} survived SIGKILL")


async def _rmdir(path: Path) -> None:
    for _ in range(200):
        try:
            os.rmdir(path)  # a cgroupfs rmdir does not touch a disk
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise SandboxFailure(f"cannot remove cgroup {path}: {e.strerror}") from e
        await asyncio.sleep(0.01)
    raise SandboxFailure(f"cgroup {path} stayed busy after its processes were killed")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except PermissionError as e:
        raise SandboxUnavailable(f"cannot create cgroup {path}: {_FIX_HINT}") from e
    except OSError as e:
        raise SandboxUnavailable(f"cannot create cgroup {path} ({e.strerror}): {_FIX_HINT}") from e


# --- cgroup v2 --------------------------------------------------------------------------------


class CgroupV2:
    """A leaf cgroup in the unified hierarchy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    @property
    def procs_files(self) -> tuple[str, ...]:
        return (str(self.path / "cgroup.procs"),)

    def set_limits(self, limits: Limits) -> None:
        quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
        _write(self.path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        _write(self.path / "memory.max", str(limits.memory_bytes))
        for optional, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if (self.path / optional).exists():
                _write(self.path / optional, value)
        _write(self.path / "pids.max", str(limits.pids))

    def events(self) -> CgroupEvents:
        return CgroupEvents(
            oom_kills=_read_counters(self.path / "memory.events").get("oom_kill", 0),
            pids_limit_hits=_read_counters(self.path / "pids.events").get("max", 0),
        )

    def members(self) -> list[int]:
        return _read_pids(self.path / "cgroup.procs")

    def send_kill(self) -> None:
        try:
            _write(self.path / "cgroup.kill", "1")
        except OSError:  # before Linux 5.14
            _signal_members(self.path / "cgroup.procs")

    async def kill(self) -> None:
        kill_file = self.path / "cgroup.kill"
        await _kill_members(self.path / "cgroup.procs", kill_file if kill_file.exists() else None)

    async def remove(self) -> None:
        await self.kill()
        await _rmdir(self.path)


class HierarchyV2:
    version = 2

    def __init__(self, parent: Path) -> None:
        self.parent = parent

    @classmethod
    def prepare(cls, mount: Path, parent: Path) -> HierarchyV2:
        """Create ``parent`` and enable the controllers on the way down from ``mount``."""
        _mkdir_chain(mount, parent)
        node = mount
        for part in parent.relative_to(mount).parts:
            _enable_controllers(node)
            node = node / part
        _enable_controllers(parent)
        return cls(parent)

    def create(self, name: str, limits: Limits) -> CgroupV2:
        path = self.parent / name
        _mkdir(path)
        cgroup = CgroupV2(path)
        cgroup.set_limits(limits)
        return cgroup

    def existing(self) -> list[str]:
        return sorted(p.name for p in self.parent.iterdir() if p.is_dir())

    def remove_if_empty(self, name: str) -> None:
        _rmdir_quietly([self.parent / name])


def _mkdir_chain(mount: Path, parent: Path) -> None:
    node = mount
    for part in parent.relative_to(mount).parts:
        node = node / part
        _mkdir(node)


def _enable_controllers(node: Path) -> None:
    control = node / "cgroup.subtree_control"
    enabled = set(control.read_text().split())
    missing = [c for c in CONTROLLERS if c not in enabled]
    if not missing:
        return
    try:
        _write(control, " ".join(f"+{c}" for c in missing))
    except OSError as e:
        raise SandboxUnavailable(
            f"cannot enable {', '.join(missing)} in {control} ({e.strerror}): {_FIX_HINT}"
        ) from e


# --- cgroup v1 --------------------------------------------------------------------------------


class CgroupV1:
    """One directory per controller hierarchy, all with the same name."""

    def __init__(self, name: str, dirs: dict[str, Path]) -> None:
        self.name = name
        self.dirs = dirs

    @property
    def procs_files(self) -> tuple[str, ...]:
        unique = dict.fromkeys(self.dirs.values())
        return tuple(str(d / "cgroup.procs") for d in unique)

    def set_limits(self, limits: Limits) -> None:
        cpu, memory, pids = self.dirs["cpu"], self.dirs["memory"], self.dirs["pids"]
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(max(1000, round(limits.cpu * CPU_PERIOD_US))))
        _write_v1_memory(memory, limits.memory_bytes)
        _write(pids / "pids.max", str(limits.pids))

    def events(self) -> CgroupEvents:
        return CgroupEvents(
            oom_kills=_read_counters(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0),
            pids_limit_hits=_read_counters(self.dirs["pids"] / "pids.events").get("max", 0),
        )

    def members(self) -> list[int]:
        return _read_pids(self.dirs["pids"] / "cgroup.procs")

    def send_kill(self) -> None:
        _signal_members(self.dirs["pids"] / "cgroup.procs")

    async def kill(self) -> None:
        for procs in dict.fromkeys(Path(p) for p in self.procs_files):
            await _kill_members(procs)

    async def remove(self) -> None:
        await self.kill()
        for path in dict.fromkeys(self.dirs.values()):
            await _rmdir(path)


def _write_v1_memory(memory: Path, limit: int) -> None:
    # memsw (memory + swap) must stay >= the memory limit, so the order depends on the direction.
    memsw = memory / "memory.memsw.limit_in_bytes"
    has_memsw = memsw.exists()
    current = int((memory / "memory.limit_in_bytes").read_text())
    if has_memsw and limit > current:
        _write(memsw, str(limit))
        _write(memory / "memory.limit_in_bytes", str(limit))
        return
    _write(memory / "memory.limit_in_bytes", str(limit))
    if has_memsw:
        _write(memsw, str(limit))


class HierarchyV1:
    version = 1

    def __init__(self, parents: dict[str, Path]) -> None:
        self.parents = parents

    @classmethod
    def prepare(cls, mounts: dict[str, Path], relative_parent: str) -> HierarchyV1:
        parents = {c: mounts[c] / relative_parent for c in CONTROLLERS}
        for controller in CONTROLLERS:
            _mkdir_chain(mounts[controller], parents[controller])
        return cls(parents)

    def create(self, name: str, limits: Limits) -> CgroupV1:
        dirs = {c: self.parents[c] / name for c in CONTROLLERS}
        created: list[Path] = []
        try:
            for path in dict.fromkeys(dirs.values()):
                _mkdir(path)
                created.append(path)
            cgroup = CgroupV1(name, dirs)
            cgroup.set_limits(limits)
        except BaseException:
            _rmdir_quietly(created)
            raise
        return cgroup

    def existing(self) -> list[str]:
        return sorted(p.name for p in self.parents["pids"].iterdir() if p.is_dir())

    def remove_if_empty(self, name: str) -> None:
        _rmdir_quietly(dict.fromkeys(parent / name for parent in self.parents.values()))


def stale_names(names: Sequence[str], prefix: str) -> list[str]:
    """Execution cgroups left by runners that no longer exist (``<prefix><pid>-...``)."""
    stale = []
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            stale.append(name)
        except PermissionError:
            pass
    return stale
