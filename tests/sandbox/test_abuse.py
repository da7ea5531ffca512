"""The abuse suite: hostile code is contained, and the host is left unharmed.

Every case asserts both sides: what the code could not do (or was stopped doing), and that the
host is intact afterwards — the execution's cgroup is gone (so no sandboxed process survived),
host files and processes are untouched, the runner's memory stayed bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from agentkube.sandbox import ExecutionRequest, Limits
from agentkube.sandbox.local import LocalSandbox
from tests.sandbox.helpers import assert_nothing_left, cgroup_members, run

pytestmark = pytest.mark.sandbox

MiB = 1024 * 1024


def _json_lines(stdout: str) -> dict[str, object]:
    return json.loads(stdout.strip().splitlines()[-1])


async def test_fork_bomb_is_stopped_by_the_pids_limit(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, ":(){ :|:& };:\nsleep 15", language="bash", timeout_s=20)
    assert result.killed_reason == "pids"
    assert result.duration_ms < 10_000, "the bomb should be killed as soon as it hits the limit"
    await assert_nothing_left(sandbox)


async def test_memory_bomb_is_killed_for_memory(sandbox: LocalSandbox) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"
    result = await run(sandbox, code, timeout_s=20)
    assert result.killed_reason == "memory"
    assert result.exit_code != 0
    await assert_nothing_left(sandbox)


async def test_a_64_mb_allocation_succeeds_within_128mi(sandbox: LocalSandbox) -> None:
    code = "b = bytearray(64 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint(len(b))"
    result = await run(sandbox, code)
    assert result.killed_reason is None
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{64 * MiB}\n"


async def test_cpu_spin_is_killed_at_the_timeout(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "while True:\n    pass\n", timeout_s=1)
    assert result.killed_reason == "timeout"
    assert result.exit_code is None
    assert 1000 <= result.duration_ms < 3000
    await assert_nothing_left(sandbox)


async def test_sleeping_code_hits_the_wall_clock_timeout(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "import time\ntime.sleep(600)\n", timeout_s=1)
    assert result.killed_reason == "timeout"
    assert 1000 <= result.duration_ms < 3000
    await assert_nothing_left(sandbox)


async def test_cpu_use_stays_within_half_a_core(sandbox: LocalSandbox) -> None:
    # Four busy processes for 3 s of wall clock: without the quota they would use ~2 cores.
    code = textwrap.dedent(
        """
        import os, time
        start = time.monotonic()
        kids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                while time.monotonic() - start < 3:
                    pass
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        t = os.times()
        print(t.children_user + t.children_system, time.monotonic() - start)
        """
    )
    result = await run(sandbox, code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    cpu_s, wall_s = map(float, result.stdout.split())
    assert wall_s >= 3
    assert cpu_s <= 0.5 * wall_s * 1.15 + 0.1, f"used {cpu_s:.2f} CPU-s in {wall_s:.2f} s"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_flood_is_capped_and_the_runner_stays_small(
    sandbox: LocalSandbox, stream: str
) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = f"import sys\nline = 'x' * 65536\nwhile True:\n    sys.{stream}.write(line)\n"
    result = await run(sandbox, code, timeout_s=20)
    assert result.killed_reason == "output_limit"
    assert result.truncated
    assert len(getattr(result, stream)) == Limits().output_bytes
    assert result.duration_ms < 10_000
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 32 * 1024, f"runner grew by {grown_kib} KiB"
    await assert_nothing_left(sandbox)


async def test_filling_the_disk_stops_at_the_scratch_size(sandbox: LocalSandbox) -> None:
    host_free = shutil.disk_usage("/tmp").free
    code = textwrap.dedent(
        """
        import errno
        written = 0
        block = b'x' * (1024 * 1024)
        try:
            with open('/tmp/fill', 'wb') as f:
                while True:
                    f.write(block)
                    f.flush()
                    written += len(block)
        except OSError as e:
            print(written, e.errno == errno.ENOSPC)
        """
    )
    result = await run(sandbox, code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    written, enospc = result.stdout.split()
    assert enospc == "True"
    assert int(written) <= Limits().scratch_bytes
    assert shutil.disk_usage("/tmp").free > host_free - 16 * MiB, "the host's disk was used"


async def test_the_host_loopback_is_unreachable(sandbox: LocalSandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import socket
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=2)
            print('connected')
        except OSError as e:
            print('refused', type(e).__name__)
        """
    )
    try:
        result = await run(sandbox, code)
        assert result.stdout.startswith("refused"), result.stdout
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the host's listener
    finally:
        server.close()


async def test_there_is_no_external_network(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import socket
        for host in ('1.1.1.1', '151.101.0.223'):
            try:
                socket.create_connection((host, 443), timeout=2)
                print('reached', host)
            except OSError as e:
                print('unreachable', e.errno)
        print(sorted(name for _, name in socket.if_nameindex()))
        """
    )
    result = await run(sandbox, code)
    assert "reached" not in result.stdout
    assert result.stdout.count("unreachable") == 2
    assert result.stdout.strip().endswith("['lo']")


async def test_dns_does_not_resolve(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import os, socket
        try:
            print(socket.getaddrinfo('pypi.org', 443))
        except OSError as e:
            print('no dns', type(e).__name__)
        print(os.path.exists('/etc/resolv.conf'))
        """
    )
    result = await run(sandbox, code)
    assert result.stdout.splitlines() == ["no dns gaierror", "False"]


async def test_host_files_environment_and_secrets_are_invisible(
    sandbox: LocalSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "host-secret.txt"
    marker.write_text("s3cret")
    monkeypatch.setenv("AGENTKUBE_TEST_SECRET", "hunter2")
    paths = [
        str(marker),
        "/etc/shadow",
        "/etc/hostname",
        "/root",
        "/home",
        "/work",
        str(Path.cwd()),
    ]
    code = textwrap.dedent(
        f"""
        import json, os
        seen = {{p: os.path.exists(p) for p in {paths!r}}}
        environ = open('/proc/1/environ', 'rb').read().decode()
        print(json.dumps({{
            'seen': seen,
            'env': dict(os.environ),
            'pid1_env': environ,
            'etc': sorted(os.listdir('/etc')),
            'tmp': sorted(os.listdir('/tmp')),
        }}))
        """
    )
    result = await run(sandbox, code)
    assert result.exit_code == 0, result.stderr
    report = _json_lines(result.stdout)
    assert not any(report["seen"].values()), report["seen"]  # type: ignore[attr-defined]
    assert "hunter2" not in result.stdout
    assert "AGENTKUBE_TEST_SECRET" not in report["env"]  # type: ignore[operator]
    assert "hunter2" not in str(report["pid1_env"])
    etc = report["etc"]
    assert isinstance(etc, list)
    assert set(etc) <= {"passwd", "group", "ld.so.cache", "localtime", "alternatives"}
    assert report["tmp"] == ["out"]
    assert marker.read_text() == "s3cret"


async def test_nothing_outside_the_scratch_area_is_writable(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    before = {p: p.stat().st_mtime_ns for p in (Path("/usr/bin"), Path("/etc"))}
    targets = ["/x", "/usr/x", "/usr/bin/python3", "/etc/passwd", "/dev/x", "/proc/sys/kernel/x",
               "/proc/sysrq-trigger", str(tmp_path / "x")]  # fmt: skip
    code = textwrap.dedent(
        f"""
        import json
        results = {{}}
        for path in {targets!r}:
            try:
                with open(path, 'a') as f:
                    f.write('x')
                results[path] = 'written'
            except OSError as e:
                results[path] = type(e).__name__
        open('/tmp/scratch-ok', 'w').write('fine')
        print(json.dumps(results))
        """
    )
    result = await run(sandbox, code)
    assert result.exit_code == 0, result.stderr
    assert "written" not in _json_lines(result.stdout).values()
    assert not (tmp_path / "x").exists()
    assert {p: p.stat().st_mtime_ns for p in before} == before


async def test_host_processes_can_be_neither_seen_nor_killed(sandbox: LocalSandbox) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code = textwrap.dedent(
            f"""
            import os, signal
            pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
            try:
                os.kill({victim.pid}, signal.SIGKILL)
                print('killed')
            except ProcessLookupError:
                print('no such process')
            try:
                os.kill(-1, signal.SIGKILL)  # everything we may signal: only our own namespace
            except OSError:
                pass
            print(pids)
            """
        )
        result = await run(sandbox, code)
        first, pids = result.stdout.splitlines()[0], result.stdout.splitlines()[-1]
        assert first == "no such process"
        assert victim.pid not in json.loads(pids)
        assert len(json.loads(pids)) <= 3
        assert victim.poll() is None, "the host process was killed"
    finally:
        victim.kill()
        victim.wait()


async def test_code_has_no_capabilities_and_no_root(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import os
        status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())
        print(os.getuid(), os.getgid(), os.getgroups())
        print(status['CapEff'].strip(), status['CapBnd'].strip(), status['CapPrm'].strip())
        print(status['NoNewPrivs'].strip(), status['Seccomp'].strip())
        try:
            os.setuid(0)
            print('became root')
        except OSError:  # EINVAL: uid 0 does not even exist in the sandbox's user namespace
            print('setuid refused')
        """
    )
    result = await run(sandbox, code)
    lines = result.stdout.splitlines()
    assert lines[0] == "65534 65534 []"
    assert lines[1] == "0000000000000000 0000000000000000 0000000000000000"
    assert lines[2] == "1 2"  # no_new_privs, seccomp filter mode
    assert lines[3] == "setuid refused"


async def test_sandboxed_processes_are_never_host_root(sandbox: LocalSandbox) -> None:
    task = asyncio.create_task(run(sandbox, "import time\ntime.sleep(30)", timeout_s=5))
    uids: set[str] = set()
    deadline = time.monotonic() + 4
    while not uids and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for name in sandbox.live_cgroups():
            for pid in cgroup_members(name):
                status = Path(f"/proc/{pid}/status").read_text()
                uids |= {line.split()[1] for line in status.splitlines() if line.startswith("Uid:")}
    result = await task
    assert result.killed_reason == "timeout"
    assert uids, "never saw the sandbox's processes"
    assert "0" not in uids
    if os.geteuid() == 0:
        assert uids == {"65534"}


async def test_nested_user_namespaces_and_mounts_are_refused(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        for cmd in 'unshare -U true' 'unshare -Ur true' 'unshare -m true' \\
                   'mount -t tmpfs none /tmp' 'chroot / true'; do
            if $cmd 2>/dev/null; then echo "ALLOWED: $cmd"; else echo "refused: $cmd"; fi
        done
        """
    )
    result = await run(sandbox, code, language="bash")
    assert "ALLOWED" not in result.stdout
    assert result.stdout.count("refused") == 5


async def test_dangerous_syscalls_are_denied_by_seccomp(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        calls = {'ptrace': (101, 16, 1), 'bpf': (321, 0, 0), 'keyctl': (250, 0, 0),
                 'io_uring_setup': (425, 1, 0), 'unshare(NEWUSER)': (272, 0x10000000, 0)}
        for name, (nr, a, b) in calls.items():
            rc = libc.syscall(nr, a, b, 0)
            print(name, rc, os.strerror(ctypes.get_errno()))
        """
    )
    if os.uname().machine != "x86_64":
        pytest.fail("this test's syscall numbers are x86_64's; add this machine's")
    result = await run(sandbox, code)
    assert result.exit_code == 0, result.stderr
    for line in result.stdout.splitlines():
        assert line.endswith("-1 Operation not permitted"), line


async def test_only_harmless_devices_exist(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import os
        print(sorted(os.listdir('/dev')))
        for dev in ('/dev/mem', '/dev/kmsg', '/dev/sda', '/dev/vda', '/dev/kvm'):
            print(dev, os.path.exists(dev))
        try:
            os.mknod('/tmp/null', 0o666 | 0o020000, os.makedev(1, 3))
            print('mknod ALLOWED')
        except OSError:
            print('mknod refused')
        """
    )
    result = await run(sandbox, code)
    lines = result.stdout.splitlines()
    devices = set(json.loads(lines[0].replace("'", '"')))
    harmless = {"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm",
                "fd", "stdin", "stdout", "stderr", "core"}  # fmt: skip
    assert devices <= harmless
    assert all(line.endswith("False") for line in lines[1:6])
    assert lines[6] == "mknod refused"


async def test_orphaned_background_processes_die_with_the_execution(
    sandbox: LocalSandbox,
) -> None:
    code = "(sleep 1234.5 &)\nnohup sleep 1234.5 >/dev/null 2>&1 &\nsetsid sleep 1234.5 &\n"
    code += "echo started\n"
    result = await run(sandbox, code, language="bash", timeout_s=10)
    assert result.exit_code == 0
    assert result.stdout == "started\n"
    assert result.duration_ms < 5000, "the runner waited for the background processes"
    leftovers = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == "sleep 1234.5"
    ]
    assert leftovers == []
    await assert_nothing_left(sandbox)


async def test_when_the_result_returns_every_sandboxed_process_is_already_dying(
    sandbox: LocalSandbox,
) -> None:
    code = "for i in 1 2 3 4 5; do sleep 999 & done\necho ok\n"
    result = await sandbox.execute(ExecutionRequest(language="bash", code=code))
    assert result.stdout == "ok\n"
    survivors = [
        pid
        for name in sandbox.live_cgroups()
        for pid in cgroup_members(name)
        if not _dead_or_dying(pid)
    ]
    assert survivors == []
    await assert_nothing_left(sandbox)


PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit()


def _dead_or_dying(pid: int) -> bool:
    """Exited, exiting, or with SIGKILL pending: it cannot run user code again.

    A killed task takes the SIGKILL off its pending set as it starts exiting, so "exiting" is
    read from its flags (field 9 of /proc/<pid>/stat) rather than from the pending signals alone.
    """
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    flags = int(stat.rsplit(")", 1)[1].split()[6])  # fields after "comm)": state is field 3
    sigkill = 1 << 8
    pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    exiting = bool(flags & PF_EXITING)
    return status["State"].strip()[0] in "ZX" or bool(pending & sigkill) or exiting


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def test_twenty_simultaneous_executions_stay_isolated(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import os, time
        me = os.environ['WHO']
        open('/tmp/who', 'w').write(me)
        time.sleep(0.5)
        others = [p for p in os.listdir('/proc') if p.isdigit()]
        print(open('/tmp/who').read(), len(others), sorted(os.listdir('/tmp')))
        """
    )
    requests = [
        ExecutionRequest(code=code, env={"WHO": f"job{i}"}, limits=Limits(timeout_s=60))
        for i in range(20)
    ]
    results = await asyncio.gather(*(sandbox.execute(r) for r in requests))
    for i, result in enumerate(results):
        assert result.exit_code == 0, result.stderr
        who, processes, listing = result.stdout.split(" ", 2)
        assert who == f"job{i}"
        assert int(processes) <= 3
        assert listing.strip() == "['out', 'who']"
    await assert_nothing_left(sandbox)
