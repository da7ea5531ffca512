"""The program a sandbox pod runs: read one request, run it, write a compact result, exit.

It is passed to ``python3 -c`` in the pod spec (standard library only, Python >= 3.8), so any
image with python3 and bash can be the sandbox image and the pod needs no agentkube install.

The request comes from the environment variable ``AGENTKUBE_SANDBOX_REQUEST`` (cold Job path) or,
for a warm pod created before there was a request, from the file named by
``AGENTKUBE_SANDBOX_REQUEST_FILE``: a downward-API volume of the pod's request annotation, which
stays empty until the gateway claims the pod (the runner polls it). The pod has no API token and
no network; the request reaches it only through its own spec and metadata.

The result goes to the container's termination message (``/dev/termination-log``, or the path in
``AGENTKUBE_TERMINATION_LOG``), which the kubelet copies into the pod status. Kubernetes caps that
message at 4096 bytes. A result that fits goes there whole. One that does not is written whole to
the container's stdout as a single line, ``agentkube-result <JSON>`` (the pod log, which the
gateway reads with ``tailLines=1``), and the termination message carries a cut copy with ``log``
set. The code's own output never reaches the container's stdout or stderr directly, so the
runner's line is the log's last. The runner exits 0 whenever it produced a result, whatever the
code's exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
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


def _request() -> dict[str, Any]:
    text = os.environ.get(REQUEST_ENV)
    path = os.environ.get(REQUEST_FILE_ENV)
    while not text and path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            text = ""
        if not text:
            time.sleep(POLL_S)
    request: dict[str, Any] = json.loads(text or "{}")
    return request


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


def run(request: dict[str, Any]) -> dict[str, Any]:
    main = _write_inputs(request)
    argv = [sys.executable, main] if request["language"] == "python" else ["bash", main]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.getcwd(), "LANG": "C.UTF-8"}
    env.update(request.get("env", {}))
    cap = int(request.get("output_bytes", 1 << 20))
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
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
    try:
        proc.wait(timeout=float(request.get("timeout_s", 30)))
    except subprocess.TimeoutExpired:
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


def main() -> None:
    result = run(_request())
    message = compact(result)
    if json.loads(message).get("log"):
        # One line: JSON escapes every newline inside the strings.
        whole = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.buffer.write((LOG_MARKER + whole + "\n").encode("utf-8"))
        sys.stdout.buffer.flush()
    path = os.environ.get("AGENTKUBE_TERMINATION_LOG", "/dev/termination-log")
    with open(path, "w", encoding="utf-8") as f:
        f.write(message)


if __name__ == "__main__":
    main()
