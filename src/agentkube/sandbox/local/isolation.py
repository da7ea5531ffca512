"""What the sandbox can see: the bubblewrap command line, built as a pure function of a config.

Every namespace is new (user, pid, net, mount, ipc, uts, cgroup). Inside, the code runs as uid
65534 with no capabilities, nested user namespaces disabled, ``no_new_privs`` set and the seccomp
filter loaded. The filesystem is a read-only root holding only the read-only system directories
(``/usr`` and its ``/bin``, ``/lib`` links), a private ``/proc``, a minimal ``/dev`` (null, zero,
random, tty…) and one size-limited tmpfs at ``/tmp`` that is the scratch area and working
directory. Nothing of the host's ``/tmp``, ``/root``, ``/home``, ``/etc`` secrets, devices or
environment is there: bubblewrap itself is started with an empty environment, and the sandbox's
pid 1 is our own helper (``--as-pid-1``), so even ``/proc/1/environ`` shows only the sandbox's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 65534
SANDBOX_GID = 65534
SCRATCH = "/tmp"
SHM_BYTES = 4 * 1024 * 1024
SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": SCRATCH,
    "TMPDIR": SCRATCH,
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
}
PASSWD = f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:{SCRATCH}:/bin/sh\n"
GROUP = f"sandbox:x:{SANDBOX_GID}:\n"
# Read-only pieces of /etc that programs need and that hold nothing secret.
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True, kw_only=True)
class IsolationConfig:
    """How the sandbox is assembled on this machine."""

    bwrap: str = "bwrap"
    python: str = "/usr/bin/python3"
    bash: str = "/bin/bash"
    system_dirs: tuple[str, ...] = ("/usr",)
    etc_files: tuple[str, ...] = ETC_FILES
    hostname: str = "sandbox"
    env: dict[str, str] = field(default_factory=lambda: dict(SANDBOX_ENV))


@dataclass(frozen=True, kw_only=True)
class SpawnFds:
    """File descriptors bubblewrap reads its set-up data from, as numbered in its process."""

    seccomp: int | None
    passwd: int
    group: int


def root_links(root: Path = Path("/")) -> list[tuple[str, str]]:
    """The host's merged-/usr symlinks (``/bin -> usr/bin``) to recreate inside."""
    links = []
    for name in MERGED_USR_LINKS:
        path = root / name.lstrip("/")
        if path.is_symlink():
            links.append((os.readlink(path), name))
    return links


def root_dirs(root: Path = Path("/")) -> list[str]:
    """Top-level system directories that are real directories here (non-merged /usr)."""
    return [
        name
        for name in MERGED_USR_LINKS
        if (root / name.lstrip("/")).is_dir() and not (root / name.lstrip("/")).is_symlink()
    ]


def bwrap_argv(
    config: IsolationConfig, *, scratch_bytes: int, fds: SpawnFds, command: list[str]
) -> list[str]:
    """The full bubblewrap command line that runs ``command`` isolated."""
    argv = [
        config.bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_GID),
        "--hostname", config.hostname,
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop", "ALL",
        "--clearenv",
    ]  # fmt: skip
    for directory in config.system_dirs:
        argv += ["--ro-bind", directory, directory]
    for directory in root_dirs():
        argv += ["--ro-bind", directory, directory]
    for target, link in root_links():
        argv += ["--symlink", target, link]
    for path in config.etc_files:
        argv += ["--ro-bind-try", path, path]
    argv += ["--ro-bind-data", str(fds.passwd), "/etc/passwd"]
    argv += ["--ro-bind-data", str(fds.group), "/etc/group"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "0700", "--size", str(scratch_bytes), "--tmpfs", SCRATCH]
    # /dev/shm would otherwise be a writable directory on bubblewrap's /dev tmpfs.
    argv += ["--perms", "0700", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", SCRATCH]
    for name, value in config.env.items():
        argv += ["--setenv", name, value]
    if fds.seccomp is not None:
        argv += ["--seccomp", str(fds.seccomp)]
    return [*argv, "--", *command]
