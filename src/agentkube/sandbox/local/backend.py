"""The local backend: each execution in its own bubblewrap sandbox and cgroup, then destroyed.

``LocalSandbox().execute(ExecutionRequest(code="print(1)"))`` starts a sandbox (or takes a warm
one from the pool), sends it the request, watches it — wall-clock timeout, output caps, the pids
limit — and afterwards kills everything in its cgroup and removes it, so nothing is left running.
It refuses to run when isolation cannot be set up (no bubblewrap, no usable cgroups, user
namespaces disabled): there is no unisolated fallback.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import shutil
import subprocess
from functools import cache
from types import TracebackType

from agentkube.background import BackgroundTasks
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.errors import SandboxFailure, SandboxUnavailable
from agentkube.sandbox.local import cgroup_detection, cgroups, seccomp
from agentkube.sandbox.local.execution import run_request
from agentkube.sandbox.local.isolation import IsolationConfig
from agentkube.sandbox.local.spawning import SandboxProcess, SpawnSettings, spawn
from agentkube.sandbox.local.warm_pool import LocalWarmPool
from agentkube.sandbox.policy import DEFAULT_POLICY, SandboxPolicy

log = logging.getLogger(__name__)

CGROUP_PREFIX = "sbx-"
NOBODY = 65534
MIN_BWRAP = (0, 8, 0)  # --size for tmpfs and --disable-userns
INSTALL_HINT = "install it with `make setup` (scripts/setup.sh) or `apt-get install bubblewrap`"


@cache
def _bwrap_version(path: str) -> tuple[int, ...]:
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False, env={}
    ).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(n) for n in match.groups()) if match else (0, 0, 0)


def _find_bwrap(bwrap: str) -> str:
    path = shutil.which(bwrap)
    if path is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    version = _bwrap_version(path)
    if version < MIN_BWRAP:
        found = ".".join(map(str, version))
        raise SandboxUnavailable(f"bubblewrap {found} at {path} is too old, need >= 0.8.0")
    return path


def _check_interpreter(config: IsolationConfig) -> None:
    for program in (config.python, config.bash):
        real = os.path.realpath(program)
        if not os.access(real, os.X_OK):
            raise SandboxUnavailable(f"{program} is not an executable; pass python=... or bash=...")
        if not any(real.startswith(d.rstrip("/") + "/") for d in config.system_dirs):
            raise SandboxUnavailable(
                f"{program} resolves to {real}, outside the sandbox's read-only system "
                f"directories {list(config.system_dirs)}; use a system interpreter such as "
                "/usr/bin/python3"
            )


async def _destroy_logging_errors(sandbox: SandboxProcess) -> None:
    try:
        await sandbox.destroy()
    except Exception:
        log.exception("could not clean up sandbox %s", sandbox.cgroup.name)


class LocalSandbox:
    """Runs requests in single-use bubblewrap sandboxes on this machine.

    ``pool_size`` sandboxes are kept pre-started (warm) once :meth:`start` or the first
    :meth:`execute` runs. ``python`` is the interpreter *inside* the sandbox; it must live under
    the read-only system directories (by default ``/usr``). ``cgroup_parent`` (or the environment
    variable ``AGENTKUBE_SANDBOX_CGROUP``) chooses where execution cgroups are made. ``host_uid``
    is the unprivileged host uid sandboxes run as; by default ``nobody`` when we are root.
    """

    def __init__(
        self,
        pool_size: int = 0,
        *,
        python: str = "/usr/bin/python3",
        bash: str = "/bin/bash",
        bwrap: str = "bwrap",
        cgroup_parent: str | None = None,
        host_uid: int | None = None,
        pool_limits: Limits | None = None,
        use_seccomp: bool = True,
        policy: SandboxPolicy = DEFAULT_POLICY,
    ) -> None:
        self.policy = policy
        if pool_size < 0:
            raise ValueError("pool_size must be >= 0")
        config = IsolationConfig(bwrap=_find_bwrap(bwrap), python=python, bash=bash)
        _check_interpreter(config)
        hierarchy = cgroup_detection.detect(
            parent=cgroup_parent or os.environ.get("AGENTKUBE_SANDBOX_CGROUP")
        )
        program = seccomp.build_filter() if use_seccomp else None
        if host_uid is None and os.geteuid() == 0:
            host_uid = NOBODY
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        if host_uid is not None and not os.access(setpriv, os.X_OK):
            raise SandboxUnavailable(
                "setpriv is missing: install util-linux (apt-get install util-linux)"
            )
        self._settings = SpawnSettings(
            isolation=config,
            hierarchy=hierarchy,
            seccomp_program=program,
            host_uid=host_uid,
            host_gid=NOBODY if host_uid is not None else None,
            setpriv=setpriv,
        )
        self._prefix = f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-"
        self._names = (f"{self._prefix}{n}" for n in itertools.count())
        self._pool_limits = pool_limits or Limits()
        self._pool = LocalWarmPool(pool_size, self._spawn_warm) if pool_size else None
        self.warm_hits = self.warm_misses = 0  # executions a warm sandbox took, or not
        self._closed = False
        self._cleanups = BackgroundTasks()
        self._remove_stale_cgroups()

    @property
    def cgroup_version(self) -> int:
        return self._settings.hierarchy.version

    @property
    def seccomp_enabled(self) -> bool:
        return self._settings.seccomp_program is not None

    def warm_count(self) -> int:
        """How many pre-started sandboxes are waiting for code."""
        return self._pool.ready_count if self._pool is not None else 0

    def live_cgroups(self) -> list[str]:
        """Names of the execution cgroups this backend holds (none once all is cleaned up)."""
        return [n for n in self._settings.hierarchy.existing() if n.startswith(self._prefix)]

    async def start(self) -> None:
        """Fill the warm pool and wait until it is ready (a no-op without a pool)."""
        self._check_open()
        if self._pool is not None:
            await self._pool.wait_full()

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        self._check_open()
        self.policy.check(request)
        sandbox = await self._acquire(request.limits)
        try:
            result = await run_request(sandbox, request)
        except BaseException:
            await sandbox.destroy()
            raise
        finally:
            if self._pool is not None and not self._closed:
                self._pool.fill()
        # Every process of the sandbox has been sent SIGKILL; reaping them and removing the
        # cgroup need not delay the result.
        self._cleanups.spawn(_destroy_logging_errors(sandbox))
        return result

    async def settle(self) -> None:
        """Wait until every finished execution's sandbox is reaped and its cgroup removed."""
        await self._cleanups.wait()

    async def aclose(self) -> None:
        self._closed = True
        if self._pool is not None:
            await self._pool.aclose()
        await self.settle()

    async def __aenter__(self) -> LocalSandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxFailure("this LocalSandbox is closed")

    async def _acquire(self, limits: Limits) -> SandboxProcess:
        if self._pool is not None:
            warm = self._pool.take(limits.scratch_bytes)
            if warm is not None:
                self.warm_hits += 1
                return warm
            self.warm_misses += 1
        return await spawn(self._settings, next(self._names), limits)

    async def _spawn_warm(self) -> SandboxProcess:
        return await spawn(self._settings, next(self._names), self._pool_limits)

    def _remove_stale_cgroups(self) -> None:
        hierarchy = self._settings.hierarchy
        for name in cgroups.stale_names(hierarchy.existing(), CGROUP_PREFIX):
            hierarchy.remove_if_empty(name)
