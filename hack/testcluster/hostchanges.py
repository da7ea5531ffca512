"""What the real node changes on the host, recorded before it is changed, so it can be undone.

A kubelet, containerd and kube-router cannot be confined to a state directory: they add a /32 to
`lo`, a bridge, cgroups, mounts, iptables chains and ipsets, set sysctls, and write a few
hard-coded paths. `snapshot` records the host as it was (and which of those paths existed) in
RECORD, in /run: the changes it describes vanish at reboot, and so does the record. `undo` reverts
exactly what the record names, tolerating parts already gone, so it serves both `down` and the
next `up` after a session was killed (its processes die with it; mounts and chains do not).

Only chains and sets named like kube-router's, the kubelet's and CNI's (KUBE-*, CNI-*,
kube-router-*) that did not exist before are removed; nothing that was there before is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD = Path("/run/agentkube-testcluster-realnode.json")
# Sysctls the kubelet (vm.*, kernel.*), the bridge (ip_forward) and kube-router (bridge-nf) set.
SYSCTLS = (
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
)
# Paths the components write whatever their flags say.
HARD_CODED_DIRS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/containerd",
    "/opt/containerd",
    "/run/agentkube-realnode",  # nodeconfig.SHORT_ROOT
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
IPSET_PREFIXES = ("KUBE-", "kube-router", "inet6:")
CGROUP_FS = Path("/sys/fs/cgroup")
MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(kw_only=True)
class HostRecord:
    """The host as it was before the real node started, and the names of what it adds."""

    cluster_dir: str  # the state directory of the cluster the node belongs to
    state_dir: str  # the node's files: every mount under it is the node's
    bin_dir: str  # every process whose executable lies here is the node's
    node_ip: str  # the /32 added to lo
    bridge: str
    cgroup_root: str  # the kubelet's --cgroup-root, without the leading slash
    sysctls: dict[str, str] = field(default_factory=dict)
    absent_dirs: list[str] = field(default_factory=list)
    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # tool -> table -> names
    ipsets: list[str] = field(default_factory=list)
    lo_address_added: bool = False

    def save(self) -> None:
        tmp = RECORD.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(RECORD)

    @classmethod
    def load(cls) -> HostRecord | None:
        try:
            data: dict[str, Any] = json.loads(RECORD.read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)


def snapshot(
    *,
    cluster_dir: Path,
    state_dir: Path,
    bin_dir: Path,
    node_ip: str,
    bridge: str,
    cgroup_root: str,
) -> HostRecord:
    """Record the host before any change (and save the record at once)."""
    record = HostRecord(
        cluster_dir=str(cluster_dir),
        state_dir=str(state_dir),
        bin_dir=str(bin_dir),
        node_ip=node_ip,
        bridge=bridge,
        cgroup_root=cgroup_root,
        sysctls={name: value for name in SYSCTLS if (value := _sysctl(name)) is not None},
        absent_dirs=[d for d in HARD_CODED_DIRS if not os.path.lexists(d)],
        chains={tool: _chains(tool) for tool in ("iptables", "ip6tables")},
        ipsets=_ipsets(),
    )
    record.save()
    return record


def mount_tmpfs(record: HostRecord, size: str) -> None:
    """A tmpfs at the node's state directory: `undo` detaches it like every mount under it."""
    root = Path(record.state_dir)
    root.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(root), check=True)


def add_node_ip(record: HostRecord) -> None:
    """The kubelet refuses a loopback node IP and this kernel has no `dummy` links: a /32 on lo."""
    if f" {record.node_ip}/32 " in _run("ip", "-4", "-o", "addr", "show", "dev", "lo") + " ":
        return
    _run("ip", "addr", "add", f"{record.node_ip}/32", "dev", "lo", check=True)
    record.lo_address_added = True
    record.save()


def make_cgroup_root(record: HostRecord) -> None:
    """The kubelet wants its --cgroup-root to exist in every hierarchy it uses."""
    for hierarchy in _hierarchies():
        (hierarchy / record.cgroup_root).mkdir(exist_ok=True)


def undo(record: HostRecord) -> list[str]:
    """Revert everything the record names; return what could not be reverted (best effort)."""
    problems: list[str] = []
    _kill_node_processes(record)
    for step in (_unmount, _remove_cgroups, _remove_chains, _remove_ipsets, _remove_links):
        try:
            step(record)
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"{step.__name__.lstrip('_').replace('_', ' ')}: {e}")
    for name, value in record.sysctls.items():
        if _sysctl(name) != value:
            try:
                _sysctl_path(name).write_text(value)
            except OSError as e:
                problems.append(f"restoring {name}={value}: {e}")
    for directory in record.absent_dirs:
        shutil.rmtree(directory, ignore_errors=True)
    RECORD.unlink(missing_ok=True)
    return problems


# -- processes, mounts, cgroups -----------------------------------------------------------------


def _kill_node_processes(record: HostRecord) -> None:
    """SIGKILL the node's daemons and shims (by executable) and every process in its cgroups,
    until none is left (a shim may start a process while we kill)."""
    prefix = record.bin_dir.rstrip("/") + "/"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = {pid for pid in _pids() if (_exe(pid) or "").startswith(prefix)}
        pids |= _cgroup_pids(record)
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _unmount(record: HostRecord) -> None:
    """Detach every mount at or under the node's state directory, deepest first."""
    for _ in range(5):  # detaching a parent can reveal nothing new, but propagation may lag
        mounts = _mounts_under(Path(record.state_dir))
        if not mounts:
            return
        for mount_point in sorted(mounts, key=lambda m: m.count("/"), reverse=True):
            if _LIBC.umount2(mount_point.encode(), MNT_DETACH) != 0:
                errno = ctypes.get_errno()
                if errno not in (22, 2):  # EINVAL: no longer a mount; ENOENT: gone
                    raise OSError(errno, f"umount {mount_point}: {os.strerror(errno)}")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at root or below it."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = _unescape(line.split()[4])
        if mount_point.startswith(prefix) or mount_point == str(root):
            found.append(mount_point)
    return found


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code in ("040", "011", "012", "134"):
        text = text.replace(f"\\{code}", chr(int(code, 8)))
    return text


def _remove_cgroups(record: HostRecord) -> None:
    for hierarchy in _hierarchies():
        root = hierarchy / record.cgroup_root
        if not root.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(root), key=lambda w: w[0].count("/"), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(directory)


def _cgroup_pids(record: HostRecord) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / record.cgroup_root
        for procs in root.rglob("cgroup.procs") if root.is_dir() else ():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers, named ones, and the unified one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount_point, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2") and mount_point.startswith(str(CGROUP_FS)):
            found.append(Path(mount_point))
    return found


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


# -- iptables, ipsets, links --------------------------------------------------------------------


def _chains(tool: str) -> dict[str, list[str]]:
    """tool's chains per table, as they are now (no table when the tool is missing)."""
    if shutil.which(tool) is None:
        return {}
    tables = {}
    for table in ("filter", "nat", "mangle", "raw"):
        out = _run(tool, "-w", "-t", table, "-S")
        tables[table] = [
            line.split()[1] for line in out.splitlines() if line.startswith(("-N", "-P"))
        ]
    return tables


def _remove_chains(record: HostRecord) -> None:
    for tool, tables in record.chains.items():
        for table, before in tables.items():
            now = _chains(tool).get(table, [])
            new = {c for c in now if c not in before and c.startswith(CHAIN_PREFIXES)}
            if not new:
                continue
            for line in _run(tool, "-w", "-t", table, "-S").splitlines():
                words = shlex.split(line)
                if words[:1] == ["-A"] and words[1] not in new and _jumps_to(words, new):
                    _run(tool, "-w", "-t", table, "-D", *words[1:])
            for chain in new:
                _run(tool, "-w", "-t", table, "-F", chain)
            for chain in new:
                _run(tool, "-w", "-t", table, "-X", chain)


def _jumps_to(words: list[str], chains: set[str]) -> bool:
    return any(w in ("-j", "-g") and nxt in chains for w, nxt in itertools.pairwise(words))


def _ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    return _run("ipset", "list", "-n").split()


def _remove_ipsets(record: HostRecord) -> None:
    for name in _ipsets():
        if name not in record.ipsets and name.startswith(IPSET_PREFIXES):
            _run("ipset", "destroy", name)


def _remove_links(record: HostRecord) -> None:
    if Path(f"/sys/class/net/{record.bridge}").exists():
        _run("ip", "link", "delete", record.bridge, check=True)
    if record.lo_address_added:
        _run("ip", "addr", "del", f"{record.node_ip}/32", "dev", "lo")


# -- small helpers ------------------------------------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def _run(*argv: str, check: bool = False) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise subprocess.SubprocessError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout
