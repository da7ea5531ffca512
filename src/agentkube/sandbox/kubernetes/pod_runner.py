"""The program a sandbox pod runs: read one request, run it, write a compact result, exit.

It is passed to ``python3 -c`` in the pod spec (standard library only, Python >= 3.8), so any
image with python3 and bash can be the sandbox image and the pod needs no agentkube install.

The request comes from the environment variable ``AGENTKUBE_SANDBOX_REQUEST`` (cold Job path) or,
for a warm pod created before there was a request, from one of three places, whichever brings
it first (the runner takes exactly one request, then stops listening to all):

- **stdin** (``AGENTKUBE_SANDBOX_HANDOVER_STDIN=1``; the container has ``stdin`` and
  ``stdinOnce``): the gateway attaches to the container (``pods/attach``) and writes the request
  as one line; the runner answers with its whole result as the ``agentkube-result <JSON>`` line
  on stdout, which the attach streams back (and which is the log's last line). No process is
  started in the container for it. ``stdinOnce`` closes stdin when that first attach ends.

- the **handover** (``AGENTKUBE_SANDBOX_HANDOVER_DIR``): two FIFOs, ``request`` and ``result``,
  which the runner makes when it starts in the first of the ``:``-separated directories that
  can hold them (the scratch volume; else ``/tmp``, which gVisor keeps in its own memory where a
  volume of the host may refuse FIFOs). The gateway reaches them
  with ``pods/exec`` running :data:`HANDOVER_COMMAND` (``sh``, ``cat`` and ``head`` from the
  image): it writes the request as one line (compact JSON has no raw newline) into ``request``
  and streams ``result`` back; the runner writes its whole result there as one JSON line. The
  runner opens ``result`` and removes both FIFOs before the code runs, so the code never sees
  them. At most :data:`MAX_REQUEST_BYTES` are read; a longer request is refused with a result
  that says so.
- the file named by ``AGENTKUBE_SANDBOX_REQUEST_FILE``: a downward-API volume of the pod's
  request annotation, which stays empty until the gateway writes it (the runner polls it). It is
  the fallback where the gateway may not exec, and is slower: the kubelet rewrites the file only
  when its volume manager next syncs the pod.

An empty line instead of a request (on stdin or the FIFO) is a claim that fell through: the
runner ends that exec's ``cat`` (an empty result) and waits on.

A warm pod's runner starts the code's interpreter when the pod starts (:class:`Prestarted`), so
a request does not wait for Python to start: the child inherits only its pipe, runs nothing of
the request until the FIFOs are removed, and takes the request's script and environment as a
new ``python3 main.py`` would (a request that sets what Python reads at start, or bash, gets a
new process).

The pod has no API token and no network either way: the request reaches it only through its own
metadata or a process the container runtime starts inside the same container. Before it takes a
request the runner waits until it can no longer reach the Kubernetes API (:func:`await_isolation`,
when ``AGENTKUBE_SANDBOX_ISOLATION_WAIT_S`` is set), as the network plugin enforces the namespace's
deny-all NetworkPolicy some time after a pod starts; a pod that stays connected refuses to run.

The result goes to the container's termination message (``/dev/termination-log``, or the path in
``AGENTKUBE_TERMINATION_LOG``), which the kubelet copies into the pod status. Kubernetes caps that
message at 4096 bytes. A result that fits goes there whole. One that does not is written whole to
the container's stdout as a single line, ``agentkube-result <JSON>`` (the pod log, which the
gateway reads), and the termination message carries a cut copy with ``log``
set. The code's own output never reaches the container's stdout or stderr directly, so the
runner's line is the log's last. The runner exits 0 whenever it produced a result, whatever the
code's exit code. (A handed-over request gets its result through the handover too; the
termination message and log line are still written, for a gateway whose exec broke off.)
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

# Annotations are never evaluated (__future__), so builtin generics are fine on Python 3.8.
from collections.abc import Callable
from typing import IO, Any

MESSAGE_LIMIT = 4096
LOG_MARKER = "agentkube-result "  # starts the log line holding a result too large for the message
POLL_S = 0.005
REQUEST_ENV = "AGENTKUBE_SANDBOX_REQUEST"  # the request itself (cold Job)
REQUEST_FILE_ENV = "AGENTKUBE_SANDBOX_REQUEST_FILE"  # where it will appear (warm pod)
HANDOVER_ENV = "AGENTKUBE_SANDBOX_HANDOVER_DIR"  # where the exec handover's FIFOs may go (a:b)
HANDOVER_STDIN_ENV = "AGENTKUBE_SANDBOX_HANDOVER_STDIN"  # "1": the request may come on stdin
# Seconds to wait for the pod's egress to be cut before any code runs (see await_isolation).
ISOLATION_WAIT_ENV = "AGENTKUBE_SANDBOX_ISOLATION_WAIT_S"
ISOLATION_PROBE_TIMEOUT_S = 0.25  # a probe that neither connects nor fails by then was dropped
ISOLATION_RETRY_S = 0.05
ATTACHED = -1  # a request that came on stdin: its result goes to stdout (the attach's stream)
# One environment string may not exceed 128 KiB (MAX_ARG_STRLEN); annotations share 256 KiB.
MAX_REQUEST_BYTES = 96 * 1024
# What the gateway passes instead of a request when its claim fell through: an empty line, which
# the runner answers with an empty result (the exec's ``cat`` ends) and keeps waiting.
HANDOVER_ABORT = b"\n"
HANDOVER_WAIT_S = 5.0  # for the exec's reader of ``result`` to open it, and to read it
HANDOVER_LINGER_S = 1.0  # then for it to pass the result on and end (see _answer)
# What the gateway runs with pods/exec (``$0`` and ``$1``: the handover's two places): wait
# (about 10 s at most) for the runner to have made its FIFOs in one, start streaming ``result``
# back, then pass one line of stdin (the request) into ``request``. Exit 3: no runner yet; 4: it
# could make no FIFOs.
HANDOVER_COMMAND = (
    'n=0; until [ -d "$0" ] || [ -d "$1" ]; do n=$((n+1)); [ $n -gt 1000 ] && exit 3; '
    "sleep 0.01; done; "
    'd=$0; [ -p "$d/request" ] || d=$1; [ -p "$d/request" ] || exit 4; '
    'cat "$d/result" & head -n 1 > "$d/request"; wait $!'
)


class Handover:
    """The FIFOs through which a warm pod's request may arrive from the gateway's exec.

    Made under a temporary name and renamed into place, so a reader of a place finds both or
    neither. ``request`` is opened read-write: the open never waits for a writer, and a writer
    that goes away is no end of file. Where no place can hold FIFOs, the first is left an empty
    directory (the exec then exits 4 and the gateway uses the annotation).
    """

    def __init__(self, places: list[str]) -> None:
        self.fd: int | None = None
        self.places = places
        self.path = places[0]
        problems = []
        for place in places:
            try:
                self.fd = self._make(place)
            except OSError as e:
                problems.append(f"{place}: {e}")
                self._remove(place)
                continue
            self.path = place
            break
        else:
            sys.stderr.write(f"agentkube: no exec handover ({'; '.join(problems)})\n")
            with contextlib.suppress(OSError):
                os.makedirs(self.path, exist_ok=True)
        self._buffers: dict[int, bytes] = {}
        # The container's stdin, where the gateway may attach (pods/attach) to pass the request.
        self.stdin: int | None = 0 if os.environ.get(HANDOVER_STDIN_ENV) == "1" else None
        if self.stdin is not None:
            os.set_blocking(self.stdin, False)

    @staticmethod
    def _make(place: str) -> int:
        staging = place + ".new"
        os.mkdir(staging, 0o700)
        os.mkfifo(os.path.join(staging, "request"), 0o600)
        os.mkfifo(os.path.join(staging, "result"), 0o600)
        fd = os.open(os.path.join(staging, "request"), os.O_RDWR | os.O_NONBLOCK)
        try:
            os.rename(staging, place)
        except OSError:
            os.close(fd)
            raise
        return fd

    def poll(self, timeout: float) -> tuple[bytes, bool] | None:
        """Wait up to ``timeout`` for more of the request; the whole line once it is there, and
        whether it came on stdin (pods/attach) rather than the FIFO."""
        sources = [fd for fd in (self.fd, self.stdin) if fd is not None]
        if not sources:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select(sources, [], [], timeout)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:  # stdin's end (the attach went away; stdinOnce): only the FIFO is left
                self.stdin = None
                continue
            line, newline, rest = (self._buffers.get(fd, b"") + data).partition(b"\n")
            self._buffers[fd] = rest if newline else line
            if newline or len(line) > MAX_REQUEST_BYTES:  # too long: refused by _request
                return line, fd == self.stdin
        return None

    def open_result(self) -> int | None:
        """The write end of ``result``, once the exec's reader has opened it (or None)."""
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while True:
            try:
                fd = os.open(os.path.join(self.path, "result"), os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                if time.monotonic() > deadline:
                    return None
                time.sleep(POLL_S)
                continue
            os.set_blocking(fd, True)
            return fd

    def close(self) -> None:
        """Close ``request`` and remove the FIFOs: nothing of the handover is left to the code."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        for place in self.places:
            self._remove(place)

    @staticmethod
    def _remove(place: str) -> None:
        for folder in (place, place + ".new"):
            for name in ("request", "result"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
            with contextlib.suppress(OSError):
                os.rmdir(folder)


# What a warm pod's pre-started interpreter runs (``python3 -c``; ``argv[1]``: the read end of
# the runner's pipe): wait for one message, ``<main path>\0<KEY=value>\0...``, take that
# environment, then run the script as ``python3 <main path>`` would, in a fresh ``__main__``
# namespace, with the traceback of an uncaught exception starting at the script. Nothing but
# ``os`` and ``sys`` is imported before the code runs; an empty message (the pod was never used)
# exits at once.
PRESTARTED_CHILD = r"""
def _agentkube_child():
    import os, sys
    fd = int(sys.argv[1])
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    if not data:
        sys.exit(0)
    main, *pairs = os.fsdecode(data).split("\0")
    os.environ.clear()
    for pair in pairs:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    sys.argv[:] = [main]
    sys.path[0] = os.path.dirname(os.path.abspath(main))
    with open(main, "rb") as f:
        code = compile(f.read(), main, "exec")
    namespace = sys.modules["__main__"].__dict__
    builtins = namespace["__builtins__"]
    namespace.clear()
    namespace.update(
        __name__="__main__", __doc__=None, __package__=None, __spec__=None,
        __builtins__=builtins, __file__=main, __cached__=None, __annotations__={},
    )
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next
        sys.excepthook(type(e), e, e.__traceback__)
        sys.exit(1)
_agentkube_child()
"""
# Variables a Python interpreter reads when it starts: a request setting one gets a new one.
STARTUP_ENV = ("PYTHON", "LC_", "LANG", "HOME")


def child_env() -> dict[str, str]:
    """The code's environment before the request's own variables."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.getcwd(), "LANG": "C.UTF-8"}


class Prestarted:
    """A Python interpreter started with the warm pod, waiting for its code on a pipe.

    It is started before the handover's FIFOs exist and inherits no descriptor but its pipe, and
    it runs nothing of the request until :meth:`go`, which comes after the FIFOs are removed;
    it is the same child (same session, pipes, environment, limits) :func:`run` would start.
    """

    def __init__(self) -> None:
        read_end, self._go = os.pipe()
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-c", PRESTARTED_CHILD, str(read_end)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(),
                start_new_session=True,
                pass_fds=(read_end,),
            )
        finally:
            os.close(read_end)

    def fits(self, request: dict[str, Any]) -> bool:
        """Whether this child can run ``request`` as a new interpreter would."""
        env = request.get("env", {})
        return (
            request["language"] == "python"
            and self.proc.poll() is None
            and not any(key.startswith(STARTUP_ENV) for key in env)
            and all("\0" not in k + v and "=" not in k and k for k, v in env.items())
        )

    def go(self, main: str, env: dict[str, str]) -> bool:
        """Hand the child its script and environment; False if it is gone."""
        message = "\0".join([main, *(f"{k}={v}" for k, v in env.items())])
        try:
            data = os.fsencode(message)
            while data:
                data = data[os.write(self._go, data) :]
        except (OSError, UnicodeError):
            return False
        finally:
            os.close(self._go)
        return True

    def discard(self) -> None:
        """End the child unused (its message is empty)."""
        with contextlib.suppress(OSError):
            os.close(self._go)
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def refusal(message: str) -> dict[str, Any]:
    """The result of a request that was not run."""
    return {
        "exit": None,
        "out": "",
        "err": message + "\n",
        "ms": 0.0,
        "killed": None,
        "trunc": False,
        "files": {},
    }


def await_isolation(wait_s: float) -> str | None:
    """Wait until this pod cannot reach the Kubernetes API; None then, else why not.

    A NetworkPolicy is enforced some time after the pod starts (the network plugin programs each
    new pod's address when it sees it; kube-router's sync takes up to seconds on a busy node), and
    until then the pod's traffic passes. So before any code runs, the runner tries the
    ``kubernetes`` Service every pod is given (``KUBERNETES_SERVICE_HOST``/``_PORT``, which the
    kubelet sets in every container) until a connection no longer gets through: refused, dropped
    (no answer in :data:`ISOLATION_PROBE_TIMEOUT_S`) or unroutable. A pod still connected after
    ``wait_s`` refuses to run anything: its namespace's deny-all policy is not in force.
    """
    import socket

    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not port.isdigit():
        return "no KUBERNETES_SERVICE_HOST to check this pod's network isolation against: refused"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            probe = socket.create_connection((host, int(port)), ISOLATION_PROBE_TIMEOUT_S)
        except OSError:
            return None
        probe.close()
        if time.monotonic() >= deadline:
            return (
                f"refused to run: this sandbox pod could still reach the Kubernetes API at "
                f"{host}:{port} after {wait_s:g} s, so its namespace's deny-all NetworkPolicy "
                "is not enforced (does the cluster's network plugin enforce NetworkPolicy?)"
            )
        time.sleep(ISOLATION_RETRY_S)


def _request() -> tuple[dict[str, Any] | str, int | None]:
    """The request (or why it was refused), and where its result is to be handed back: the
    write end of the handover's ``result``, :data:`ATTACHED` (stdout) or None."""
    text = os.environ.get(REQUEST_ENV)
    path = os.environ.get(REQUEST_FILE_ENV)
    places = [p for p in os.environ.get(HANDOVER_ENV, "").split(":") if p]
    handover = Handover(places) if places and not text else None
    answer: int | None = None
    try:
        while not text and path:
            polled = handover.poll(POLL_S) if handover is not None else None
            if polled is not None and handover is not None:
                line, attached = polled
                if not line.strip():  # a claim that fell through: end its exec, wait on
                    withdrawn = None if attached else handover.open_result()
                    if withdrawn is not None:
                        os.close(withdrawn)
                    continue
                answer = ATTACHED if attached else handover.open_result()
                if len(line) > MAX_REQUEST_BYTES:
                    return f"the request is longer than {MAX_REQUEST_BYTES} bytes: refused", answer
                text = line.decode("utf-8")
                break
            if handover is None:
                time.sleep(POLL_S)
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                text = ""
    finally:
        if handover is not None:
            handover.close()
    request: dict[str, Any] = json.loads(text or "{}")
    return request, answer


def _reader(
    stream: IO[bytes],
    cap: int,
    chunks: list[bytes],
    flags: dict[str, bool],
    overflow: Callable[[], None],
) -> None:
    """Keep the first ``cap`` bytes of stream; past them the code is killed (as the local backend
    does: ``killed: output_limit``), so a flood costs neither time nor memory."""
    size = 0
    while True:
        data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not data:
            return
        if size < cap:
            chunks.append(data[: cap - size])
        if size + len(data) > cap and not flags["truncated"]:
            flags["truncated"] = True
            overflow()
        size += len(data)


def _write_inputs(request: dict[str, Any]) -> str:
    os.makedirs("out", exist_ok=True)
    for name, text in request.get("files", {}).items():
        folder = os.path.dirname(name)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    os.makedirs(".agentkube", exist_ok=True)
    main = os.path.join(".agentkube", "main.py" if request["language"] == "python" else "main.sh")
    with open(main, "w", encoding="utf-8") as f:
        f.write(request["code"])
    return main


def _out_files(cap: int) -> tuple[dict[str, str], bool]:
    files: dict[str, str] = {}
    size, truncated = 0, False
    for root, _dirs, names in os.walk("out"):
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read(cap + 1)
            except (OSError, UnicodeDecodeError):
                truncated = True
                continue
            if size + len(text) > cap:
                truncated = True
                continue
            files[os.path.relpath(path, "out")] = text
            size += len(text)
    return files, truncated


def _start(
    request: dict[str, Any], main: str, env: dict[str, str], prestarted: Prestarted | None
) -> subprocess.Popen[bytes]:
    """The code's process: the pre-started interpreter where it fits, else a new one."""
    if prestarted is not None:
        if prestarted.fits(request) and prestarted.go(main, env):
            return prestarted.proc
        prestarted.discard()
    argv = [sys.executable, main] if request["language"] == "python" else ["bash", main]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def run(request: dict[str, Any], prestarted: Prestarted | None = None) -> dict[str, Any]:
    main = _write_inputs(request)
    env = child_env()
    env.update(request.get("env", {}))
    cap = int(request.get("output_bytes", 1 << 20))
    started = time.monotonic()
    proc = _start(request, main, env, prestarted)
    out: list[bytes] = []
    err: list[bytes] = []
    flags = {"truncated": False, "overflowed": False}

    def overflow() -> None:
        flags["overflowed"] = True
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)

    readers = [
        threading.Thread(target=_reader, args=(s, cap, kept, flags, overflow), daemon=True)
        for s, kept in ((proc.stdout, out), (proc.stderr, err))
    ]
    for reader in readers:
        reader.start()
    killed = None
    # A blocking wait in a thread sees the exit at once; Popen.wait(timeout) polls, sleeping up
    # to 50 ms between looks.
    waiter = threading.Thread(target=proc.wait, daemon=True)
    waiter.start()
    waiter.join(timeout=float(request.get("timeout_s", 30)))
    if waiter.is_alive():
        killed = "timeout"
    if killed is None and flags["overflowed"]:
        killed = "output_limit"
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    code = proc.returncode
    exit_code = None if killed else (128 - code if code < 0 else code)
    files, files_truncated = _out_files(cap)
    return {
        "exit": exit_code,
        "out": b"".join(out).decode("utf-8", "replace"),
        "err": b"".join(err).decode("utf-8", "replace"),
        "ms": round((time.monotonic() - started) * 1000, 3),
        "killed": killed,
        "trunc": flags["truncated"] or files_truncated,
        "files": files,
    }


def _cut(text: str, size: int) -> str:
    return text.encode("utf-8")[: max(size, 0)].decode("utf-8", "ignore")


def compact(result: dict[str, Any], limit: int = MESSAGE_LIMIT) -> str:
    """The result as JSON of at most ``limit`` bytes: files, then stderr, then stdout give way.

    A cut result has ``trunc`` and ``log`` set: the whole one is in the log (:func:`main`).
    """
    message = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    if len(message.encode("utf-8")) <= limit:
        return message
    small = dict(result, out="", err="", files={}, trunc=True, log=True)
    room = limit - len(json.dumps(small, separators=(",", ":")).encode("utf-8")) - 16
    # dict[str, Any] escaping can grow text (quotes, control characters): shrink until it fits.
    while True:
        err = _cut(result["err"], room // 3)
        out = _cut(result["out"], room - len(err.encode("utf-8")))
        message = json.dumps(
            dict(small, out=out, err=err), ensure_ascii=False, separators=(",", ":")
        )
        if len(message.encode("utf-8")) <= limit or room <= 0:
            return message
        room -= max(len(message.encode("utf-8")) - limit, 16)


def _answer(fd: int, result: dict[str, Any]) -> None:
    """The whole result, one JSON line, to the handover's ``result`` (the gateway's exec).

    The runner then waits until the exec's ``cat`` has read it all, and a moment more: when the
    runner (the container's first process) exits, every process of the container is killed,
    and a ``cat`` killed before it passed the result on would lose it. The gateway, which has the
    result by then, deletes the pod anyway.
    """
    data = (json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        while data:
            data = data[os.write(fd, data) :]
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while _unread(fd) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    except OSError:  # the exec went away: the termination message still has the result
        return
    finally:
        os.close(fd)
    time.sleep(HANDOVER_LINGER_S)


def _unread(fd: int) -> int:
    """How many bytes of a pipe are not read yet."""
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _log_line(result: dict[str, Any]) -> None:
    """The whole result as the log's line (one line: JSON escapes every newline in strings)."""
    whole = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.buffer.write((LOG_MARKER + whole + "\n").encode("utf-8"))
    sys.stdout.buffer.flush()


def main() -> None:
    # A warm pod's code gets an interpreter started now, while the pod waits for its request.
    prestarted = None if os.environ.get(REQUEST_ENV) else Prestarted()
    wait = os.environ.get(ISOLATION_WAIT_ENV)
    blocked = await_isolation(float(wait)) if wait else None  # before any request is taken
    request, answer = _request()
    if blocked is not None and not isinstance(request, str):
        request = blocked
    if isinstance(request, str):
        if prestarted is not None:
            prestarted.discard()
        result = refusal(request)
    else:
        result = run(request, prestarted)
    if answer == ATTACHED:
        _log_line(result)  # the attach's stream is the container's stdout
        time.sleep(HANDOVER_LINGER_S)  # for the line to reach the gateway (see _answer)
    elif answer is not None:
        _answer(answer, result)
    message = compact(result)
    if answer != ATTACHED and json.loads(message).get("log"):
        _log_line(result)
    path = os.environ.get("AGENTKUBE_TERMINATION_LOG", "/dev/termination-log")
    with open(path, "w", encoding="utf-8") as f:
        f.write(message)


if __name__ == "__main__":
    main()
