"""Starting one sandbox: a fresh cgroup, bubblewrap inside it, our pid-1 helper waiting for code.

The child process joins the execution cgroup and drops to an unprivileged host uid *before* it
execs bubblewrap (see :func:`launcher_argv`), so there is no window in which a sandboxed process
runs outside the cgroup, and no sandboxed process is ever host root: inside it is uid 65534 of a
user namespace that maps to the unprivileged host uid (``nobody`` when the runner is root).
bubblewrap gets an empty environment, only the pipes it needs, and ``/`` as its working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

from agentkube.sandbox.contract import Limits
from agentkube.sandbox.errors import SandboxFailure, SandboxUnavailable
from agentkube.sandbox.local import isolation
from agentkube.sandbox.local.cgroups import CgroupHierarchy, ExecutionCgroup
from agentkube.sandbox.local.isolation import IsolationConfig, SpawnFds
from agentkube.sandbox.local.streams import CappedReader, write_all

SHIM_SOURCE = resources.files("agentkube.sandbox.local").joinpath("_shim.py").read_text()


@dataclass(frozen=True, kw_only=True)
class SpawnSettings:
    """Everything, besides limits, that a spawn needs; fixed for the life of a LocalSandbox."""

    isolation: IsolationConfig
    hierarchy: CgroupHierarchy
    seccomp_program: bytes | None
    host_uid: int | None
    host_gid: int | None
    sh: str = "/bin/sh"
    setpriv: str = "/usr/bin/setpriv"


@dataclass(eq=False, kw_only=True)
class SandboxProcess:
    """A started, single-use sandbox."""

    popen: subprocess.Popen[bytes]
    cgroup: ExecutionCgroup
    scratch_bytes: int
    bash: str
    stdin_fd: int
    stdout: CappedReader
    stderr: CappedReader
    result: CappedReader
    exited: asyncio.Future[None]
    _pidfd: int
    _destroyed: bool = field(default=False)

    async def ready(self) -> bool:
        """Wait until the pid-1 helper runs; False if the sandbox died while starting."""
        return await self.result.first_byte()

    def alive(self) -> bool:
        return not self.exited.done()

    async def send(self, request: bytes) -> None:
        """Write the request to the helper's stdin and close it (the helper reads to EOF)."""
        try:
            await write_all(self.stdin_fd, request)
        finally:
            self._close_stdin()

    def _close_stdin(self) -> None:
        # Close exactly once: a second close could hit a reused descriptor number.
        if self.stdin_fd >= 0:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    async def destroy(self) -> None:
        """Kill everything in the sandbox, remove its cgroup, release its pipes."""
        if self._destroyed:
            return
        self._destroyed = True
        try:
            # The launcher first: until it has joined the cgroup, the cgroup looks empty.
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            await self.exited
            await self.cgroup.remove()
        finally:
            for reader in (self.stdout, self.stderr, self.result):
                reader.close()
            self._close_stdin()
            os.close(self._pidfd)
            self.popen.wait()


# Runs as the sandbox's first process: join every cgroup given before "--" (writing 0 means
# "me"), then exec the rest. Nothing else runs yet, so nothing can start outside the cgroup.
JOIN_CGROUP_SCRIPT = (
    'for f; do shift; [ "$f" = -- ] && break; echo 0 > "$f" || exit 125; done; exec "$@"'
)


def launcher_argv(
    sh: str, setpriv: str, procs_files: Sequence[str], uid: int | None, gid: int | None
) -> list[str]:
    """The command prefix that joins the cgroup and drops to ``uid``/``gid`` before bubblewrap.

    A two-line shell and ``setpriv`` instead of ``preexec_fn``: ``preexec_fn`` forces a full
    ``fork`` of the runner (tens of ms for a big Python process) where this allows ``vfork``.
    """
    argv = [sh, "-c", JOIN_CGROUP_SCRIPT, "sh", *procs_files, "--"]
    if uid is not None and gid is not None:
        argv += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return argv


def _data_pipe(data: bytes) -> int:
    """A pipe whose read end yields ``data`` then EOF (for bubblewrap's --seccomp, --*-data)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)  # small (< the 64 KiB pipe buffer), so this never blocks
    finally:
        os.close(write_end)
    return read_end


def _exit_future(pid: int) -> tuple[int, asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    return pidfd, exited


def startup_limits(limits: Limits) -> Limits:
    """The limits while only bubblewrap and our helper run: the memory, pids and scratch limits
    already hold, but the CPU quota does not yet, so that starting the interpreter does not use
    up the code's CPU time for the current period (the code's own limits are set before it runs).
    """
    return limits.model_copy(update={"cpu": float(os.cpu_count() or 1)})


async def spawn(settings: SpawnSettings, name: str, limits: Limits) -> SandboxProcess:
    """Start a sandbox in a new cgroup named ``name``; it waits for its request on stdin."""
    cgroup = settings.hierarchy.create(name, startup_limits(limits))
    opened: list[int] = []
    try:
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        result_r, result_w = os.pipe()
        opened += [stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w, result_r, result_w]
        passwd = _data_pipe(isolation.PASSWD.encode())
        group = _data_pipe(isolation.GROUP.encode())
        opened += [passwd, group]
        seccomp = None
        if settings.seccomp_program is not None:
            seccomp = _data_pipe(settings.seccomp_program)
            opened.append(seccomp)
        fds = SpawnFds(seccomp=seccomp, passwd=passwd, group=group)
        command = [settings.isolation.python, "-I", "-c", SHIM_SOURCE, str(result_w)]
        argv = isolation.bwrap_argv(
            settings.isolation, scratch_bytes=limits.scratch_bytes, fds=fds, command=command
        )
        popen = _popen(
            argv,
            settings,
            cgroup,
            stdin=stdin_r,
            stdout=stdout_w,
            stderr=stderr_w,
            result=result_w,
            fds=fds,
        )
    except BaseException:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        await cgroup.remove()
        raise
    for fd in (
        stdin_r,
        stdout_w,
        stderr_w,
        result_w,
        passwd,
        group,
        *([seccomp] if seccomp else []),
    ):
        os.close(fd)
    pidfd, exited = _exit_future(popen.pid)
    return SandboxProcess(
        popen=popen,
        cgroup=cgroup,
        scratch_bytes=limits.scratch_bytes,
        bash=settings.isolation.bash,
        stdin_fd=stdin_w,
        stdout=CappedReader(stdout_r, limits.output_bytes),
        stderr=CappedReader(stderr_r, limits.output_bytes),
        result=CappedReader(result_r, limits.output_bytes),
        exited=exited,
        _pidfd=pidfd,
    )


def _popen(
    argv: list[str],
    settings: SpawnSettings,
    cgroup: ExecutionCgroup,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    result: int,
    fds: SpawnFds,
) -> subprocess.Popen[bytes]:
    extra = [fd for fd in (result, fds.passwd, fds.group, fds.seccomp) if fd is not None]
    launcher = launcher_argv(
        settings.sh, settings.setpriv, cgroup.procs_files, settings.host_uid, settings.host_gid
    )
    try:
        return subprocess.Popen(
            [*launcher, *argv],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=extra,
            env={},
            cwd="/",
        )
    except FileNotFoundError as e:
        raise SandboxUnavailable(f"{settings.sh} is missing: cannot start the sandbox") from e
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxFailure(f"could not start the sandbox in cgroup {cgroup.name}: {e}") from e
