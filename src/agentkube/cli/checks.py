"""Checks every CLI command shares, done before anything heavy starts, each failing as one line."""

from __future__ import annotations

import errno
import socket
from typing import TextIO

from agentkube.errors import UserError

K8S_EXTRA_HINT = "install the Kubernetes extra: pip install 'agentkube[k8s]'"


def check_listen(host: str, port: int, flag: str = "--port") -> None:
    """Refuse an address this process cannot listen on, naming the flag, before a server starts
    (uvicorn would log a multi-line error and exit with 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            reason = "already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise UserError(
                f"{flag} {port}: cannot listen on {host}:{port} ({reason}); pick another port "
                "or stop what holds it"
            ) from None


def require_k8s_extra(command: str) -> None:
    """One line, not an ImportError traceback, when the ``[k8s]`` extra is missing."""
    try:
        import kopf  # noqa: F401
        import lightkube  # noqa: F401
    except ImportError as e:
        raise UserError(f"{command} needs {e.name}: {K8S_EXTRA_HINT}") from None


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if chr(c) not in "\n\t"}
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})  # C1 controls (CSI, OSC, …)


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN``: untrusted
    output (sandbox stdout, a model's answer) cannot drive the terminal (clear it, retitle it,
    hide text, inject OSC links)."""
    return text.translate(_CONTROL)


def write_untrusted(stream: TextIO, text: str) -> None:
    """Write untrusted text: escaped on a terminal, byte-faithful into a pipe or a file."""
    stream.write(printable(text) if stream.isatty() else text)
