"""The sandbox's pid 1: receives one request, runs it, reports, and exits.

This file is never imported by the host; its source is handed to the sandbox's Python with ``-c``
and must use the standard library only. Started before the code is known (the warm pool), it
announces itself with one byte on the result pipe, then waits for the request on stdin: so an
execution pays only for the transfer, a ``fork`` of this ready interpreter and the code itself.

The code runs in a forked child (Python runs in place; bash is exec'd). Meanwhile this process
reaps every orphan that is re-parented to it, and when the child is gone it collects ``out/`` and
writes the result. Its exit tears the whole pid namespace down, so nothing outlives it. The code
runs with the same uid as this helper and could tamper with it; that only lets it lie about its
own result, which the host treats as untrusted data anyway.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

# Start-up time is on the cold path: no typing, no json (it pulls in re and enum). The request
# comes as marshal data from the trusted host; the report goes back in a plain framed format.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_BASH_ARG = 64 * 1024


def _safe_relative(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\0" not in name and ".." not in parts


def _write_inputs(files: dict[str, str]) -> None:
    for name, text in files.items():
        if not _safe_relative(name):
            raise ValueError(f"bad input file name {name!r}")
        directory = os.path.dirname(name)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)


def _run_python(code: str) -> None:
    import types

    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    sys.argv[:] = ["-c"]
    sys.path.insert(0, "")
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)  # noqa: S102 - this is the sandbox
        status = 0
    except SystemExit as e:
        status = _system_exit_status(e)
    except BaseException as e:
        import traceback

        tb = e.__traceback__.tb_next if e.__traceback__ else None
        traceback.print_exception(type(e), e, tb)
        status = 1
    _exit_like_python(status)


def _system_exit_status(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _exit_like_python(status: int) -> None:
    """What interpreter shutdown does that code can observe (join threads, atexit, flush),
    without tearing down every module, which would cost the execution milliseconds."""
    import atexit

    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            status = status or 120  # as Python does when it cannot flush stdout
    os._exit(status)


def _run_bash(bash: str, code: str, env: dict[str, str]) -> None:
    if len(code.encode()) <= MAX_BASH_ARG:
        os.execve(bash, ["bash", "-c", code], env)  # noqa: S606 - runs inside the sandbox
    fd = os.memfd_create("code.sh", 0)
    os.write(fd, code.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    os.execve(bash, ["bash", f"/dev/fd/{fd}"], env)  # noqa: S606


def _become_code(request: dict[str, Any], result_fd: int) -> None:
    os.close(result_fd)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    env = {**os.environ, **request["env"]}
    os.environ.clear()
    os.environ.update(env)
    code = str(request["code"])
    if request["language"] == "bash":
        _run_bash(str(request["bash"]), code, env)
    _run_python(code)


def _status_to_exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _wait_for(child: int) -> int:
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 255
        if pid == child:
            return _status_to_exit_code(status)


def _collect_outputs(limit: int) -> tuple[dict[bytes, bytes], bool]:
    files: dict[bytes, bytes] = {}
    budget, truncated = limit, False
    for top, dirs, names in os.walk("out", followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(top, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                data = f.read(budget + 1)
            if len(data) > budget:
                data, truncated = data[:budget], True
            budget -= len(data)
            files[os.fsencode(os.path.relpath(path, "out"))] = data
    return files, truncated


def main() -> None:
    result_fd = int(sys.argv[1])
    os.write(result_fd, b"R")
    request = marshal.loads(sys.stdin.buffer.read())  # noqa: S302 - from the trusted host
    _write_inputs(request["files"])
    os.makedirs("out", exist_ok=True)
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        _become_code(request, result_fd)
    exit_code = _wait_for(child)
    files, truncated = _collect_outputs(int(request["files_limit"]))
    # "<exit> <truncated> <length>\n", then per file "<name length> <data length>\n" name data.
    body = b"".join(b"%d %d\n%s%s" % (len(k), len(v), k, v) for k, v in files.items())
    data = b"%d %d %d\n" % (exit_code, truncated, len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view) :]
    os._exit(0)


main()
