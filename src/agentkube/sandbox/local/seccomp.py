"""A seccomp filter that denies the syscalls sandboxed code has no business making.

The namespaces already take most of the host out of reach; this filter narrows the kernel's attack
surface on top of them, in the spirit of Docker's default profile but as a short deny-list: kernel
modules, kexec, mount and pivot_root, new namespaces, keyrings, BPF, perf, userfaultfd, io_uring,
ptrace and cross-process memory access, clock and swap control, and the TIOCSTI/TIOCLINUX ioctls
that inject keystrokes into a terminal. Denied calls fail with ``EPERM``; ``clone3`` fails with
``ENOSYS`` because its flags live in memory a classic BPF filter cannot read, and libc then falls
back to ``clone``, whose flags the filter does check.

The program is classic BPF built here in pure Python (``struct`` packed ``sock_filter``) and handed
to bubblewrap through ``--seccomp FD``. Only x86_64 and aarch64 are known; elsewhere
:func:`build_filter` returns ``None`` and the sandbox runs with namespaces and cgroups only.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
_OFFSET_NR = 0
_OFFSET_ARCH = 4


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of syscall argument ``index`` (little-endian machines)."""
    return 16 + 8 * index


# Every CLONE_NEW* flag (<linux/sched.h>): cgroup, uts, ipc, user, pid, net, mount, time.
_CLONE_NEW_ANY = 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
_CLONE_NEW_ANY |= 0x40000000 | 0x00020000 | 0x00000080
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_X32_SYSCALL_BIT = 0x40000000

# fmt: off
_DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "delete_module", "fanotify_init",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
    "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "quotactl", "quotactl_fd", "reboot", "request_key", "setns",
    "settimeofday", "swapoff", "swapon", "syslog", "umount2", "unshare", "userfaultfd", "vhangup",
    "adjtimex", "chroot",
    # x86_64 only
    "create_module", "get_kernel_syms", "iopl", "ioperm", "nfsservctl", "query_module", "_sysctl",
    "sysfs", "uselib", "ustat",
)
# fmt: on


@dataclass(frozen=True)
class _Arch:
    audit_arch: int
    syscalls: dict[str, int]
    has_x32: bool


_X86_64 = _Arch(
    audit_arch=0xC000003E,
    has_x32=True,
    syscalls={
        "ioctl": 16, "clone": 56, "ptrace": 101, "syslog": 103, "uselib": 134, "ustat": 136,
        "sysfs": 139, "vhangup": 153, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159,
        "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
        "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
        "create_module": 174, "init_module": 175, "delete_module": 176, "get_kernel_syms": 177,
        "query_module": 178, "quotactl": 179, "nfsservctl": 180, "lookup_dcookie": 212,
        "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249,
        "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "clone3": 435, "mount_setattr": 442, "quotactl_fd": 443,
    },
)  # fmt: skip

# aarch64 uses the generic table (<asm-generic/unistd.h>).
_AARCH64 = _Arch(
    audit_arch=0xC00000B7,
    has_x32=False,
    syscalls={
        "lookup_dcookie": 18, "ioctl": 29, "umount2": 39, "mount": 40, "pivot_root": 41,
        "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "unshare": 97,
        "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112,
        "syslog": 116, "ptrace": 117, "reboot": 142, "settimeofday": 170, "adjtimex": 171,
        "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220, "swapon": 224,
        "swapoff": 225, "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "bpf": 280,
        "userfaultfd": 282, "kexec_file_load": 294, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
        "mount_setattr": 442, "quotactl_fd": 443,
    },
)  # fmt: skip

_ARCHES = {"x86_64": _X86_64, "amd64": _X86_64, "aarch64": _AARCH64, "arm64": _AARCH64}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _errno(number: int) -> bytes:
    return _insn(_BPF_RET_K, _RET_ERRNO | number)


def _program(arch: _Arch) -> list[bytes]:
    allow = _insn(_BPF_RET_K, _RET_ALLOW)
    prog = [
        _insn(_BPF_LD_W_ABS, _OFFSET_ARCH),
        _insn(_BPF_JEQ_K, arch.audit_arch, jt=1),  # a foreign ABI (e.g. i386) is killed
        _insn(_BPF_RET_K, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, _OFFSET_NR),
    ]
    if arch.has_x32:
        prog += [_insn(_BPF_JGE_K, _X32_SYSCALL_BIT, jf=1), _errno(errno.EPERM)]
    for name in _DENIED:
        if name in arch.syscalls:
            prog += [_insn(_BPF_JEQ_K, arch.syscalls[name], jf=1), _errno(errno.EPERM)]
    prog += [_insn(_BPF_JEQ_K, arch.syscalls["clone3"], jf=1), _errno(errno.ENOSYS)]
    # clone(flags, ...): deny any CLONE_NEW* flag; everything else (fork, threads) passes.
    prog += [
        _insn(_BPF_JEQ_K, arch.syscalls["clone"], jf=4),
        _insn(_BPF_LD_W_ABS, _arg_low(0)),
        _insn(_BPF_JSET_K, _CLONE_NEW_ANY, jf=1),
        _errno(errno.EPERM),
        allow,
    ]
    # ioctl(fd, request, ...): deny terminal keystroke injection.
    prog += [
        _insn(_BPF_JEQ_K, arch.syscalls["ioctl"], jf=5),
        _insn(_BPF_LD_W_ABS, _arg_low(1)),
        _insn(_BPF_JEQ_K, _TIOCSTI, jt=1),
        _insn(_BPF_JEQ_K, _TIOCLINUX, jf=1),
        _errno(errno.EPERM),
        allow,
    ]
    prog.append(allow)
    return prog


def build_filter(machine: str | None = None) -> bytes | None:
    """The compiled filter for ``machine`` (default: this one), or ``None`` if unsupported."""
    arch = _ARCHES.get(machine or platform.machine())
    return b"".join(_program(arch)) if arch else None


def denied_syscalls() -> tuple[str, ...]:
    """Names of the syscalls the filter refuses outright (for docs and tests)."""
    return tuple(_DENIED)
