"""The sandbox's pure parts, tested without starting a sandbox: seccomp program, bubblewrap
command line, cgroup detection and limit files, the helper's report format, request validation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentkube.sandbox import ExecutionRequest, Limits, SandboxUnavailable
from agentkube.sandbox.local import LocalSandbox, cgroup_detection, cgroups, isolation, seccomp
from agentkube.sandbox.local.execution import _parse_report, _report_length
from agentkube.sandbox.local.spawning import launcher_argv

MiB = 1024 * 1024


def test_the_contract_defaults_are_the_seeds() -> None:
    limits = ExecutionRequest(code="print(1)").limits
    assert (limits.cpu, limits.memory_bytes, limits.pids) == (0.5, 128 * MiB, 64)
    assert (limits.timeout_s, limits.output_bytes, limits.scratch_bytes) == (30.0, MiB, 64 * MiB)
    assert ExecutionRequest(code="x").network == "none"


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape", "a/../../b", ""])
def test_input_files_must_stay_inside_the_workdir(name: str) -> None:
    with pytest.raises(ValidationError, match="relative path"):
        ExecutionRequest(code="x", files={name: "data"})


def test_empty_code_and_bad_environment_names_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ExecutionRequest(code="")
    with pytest.raises(ValidationError, match="environment variable"):
        ExecutionRequest(code="x", env={"A=B": "c"})


def test_the_seccomp_program_checks_the_architecture_first() -> None:
    program = seccomp.build_filter("x86_64")
    assert program is not None
    assert len(program) % 8 == 0
    first = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, 24, 8)]
    assert first[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
    assert first[1][3] == 0xC000003E  # AUDIT_ARCH_X86_64
    assert first[2] == (0x06, 0, 0, 0x80000000)  # anything else: kill the process


def test_seccomp_knows_both_common_architectures_and_admits_others_are_unknown() -> None:
    assert seccomp.build_filter("aarch64") is not None
    assert seccomp.build_filter("riscv64") is None
    assert {"mount", "ptrace", "bpf", "unshare", "keyctl"} <= set(seccomp.denied_syscalls())


def test_bubblewrap_gets_every_namespace_no_privileges_and_a_sized_scratch() -> None:
    fds = isolation.SpawnFds(seccomp=9, passwd=10, group=11)
    argv = isolation.bwrap_argv(
        isolation.IsolationConfig(), scratch_bytes=64 * MiB, fds=fds, command=["python3"]
    )
    joined = " ".join(argv)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--as-pid-1", "--clearenv", "--cap-drop ALL", "--seccomp 9",
                 "--uid 65534", "--remount-ro /"):  # fmt: skip
        assert flag in joined
    assert f"--size {64 * MiB} --tmpfs /tmp" in joined
    assert "--share-net" not in argv
    binds = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")}
    assert not binds & {"/", "/root", "/home", "/tmp", "/etc", "/var", "/run", "/sys"}
    assert "--bind" not in argv, "nothing of the host is writable"
    assert argv[-2:] == ["--", "python3"]


def test_the_launcher_joins_the_cgroup_then_drops_to_the_host_uid() -> None:
    argv = launcher_argv("/bin/sh", "/usr/bin/setpriv", ["/cg/a/cgroup.procs"], 65534, 65534)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:6] == ["sh", "/cg/a/cgroup.procs", "--"]
    assert argv[6:] == [
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]


HYBRID = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
"""


def test_a_hybrid_machine_with_an_empty_cgroup2_uses_v1(tmp_path: Path) -> None:
    text = HYBRID.replace("/sys/fs/cgroup", str(tmp_path))
    for controller in ("cpu", "memory", "pids", "unified"):
        (tmp_path / controller).mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    hierarchy = cgroup_detection.detect(mountinfo=text)
    assert hierarchy.version == 1
    assert (tmp_path / "memory" / "agentkube").is_dir()


def test_cgroup_v2_gets_its_limits_as_v2_files(tmp_path: Path) -> None:
    # This machine mounts v1, so the v2 file layout is simulated by a plain directory.
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "agentkube").mkdir()
    (tmp_path / "agentkube" / "cgroup.subtree_control").write_text("")
    text = f"40 1 0:40 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    hierarchy = cgroup_detection.detect(mountinfo=text)
    assert hierarchy.version == 2
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    cgroup = hierarchy.create("sbx-1", Limits(cpu=0.5, memory_bytes=96 * MiB, pids=32))
    leaf = tmp_path / "agentkube" / "sbx-1"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "memory.max").read_text() == str(96 * MiB)
    assert (leaf / "pids.max").read_text() == "32"
    assert cgroup.procs_files == (str(leaf / "cgroup.procs"),)
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (leaf / "pids.events").write_text("max 2\n")
    assert cgroup.events() == cgroups.CgroupEvents(oom_kills=1, pids_limit_hits=2)


def test_no_usable_controllers_means_the_sandbox_is_unavailable() -> None:
    with pytest.raises(SandboxUnavailable, match="cpu, memory and pids"):
        cgroup_detection.detect(mountinfo="30 25 0:26 / /sys rw - sysfs sysfs rw\n")


def test_the_helper_report_is_parsed_and_garbage_is_harmless() -> None:
    body = b"5 2\na.txthi9 1\nsub/b.txtx"
    report = b"R0 1 %d\n" % len(body) + body
    assert _report_length(report[1:]) == len(report) - 1
    assert _parse_report(report) == (0, {"a.txt": "hi", "sub/b.txt": "x"}, True)
    assert _parse_report(b"Rnot a report") == (None, {}, False)
    assert _parse_report(b"R1 0 99\n-5 3\nxx") == (1, {}, True)
    assert _parse_report(b"R2 0 9\n100 1\nshort") == (2, {}, True)


def test_a_missing_bubblewrap_is_refused_with_how_to_install() -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        LocalSandbox(bwrap="/nonexistent/bwrap")


def test_an_interpreter_outside_the_system_directories_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="outside the sandbox's read-only system"):
        LocalSandbox(python=str(fake))
