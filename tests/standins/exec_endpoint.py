"""A stand-in for the API server's ``pods/exec`` WebSocket endpoint (and the kubelet and
container runtime behind it): the command runs as a local process in the stand-in's "container"
(a working directory), its stdin, stdout, stderr and exit status carried over the Kubernetes
channel protocol (``v5.channel.k8s.io`` / ``v4.channel.k8s.io``), as the real one does.

For the exec client's offline tests; the real path is tested on the real node
(tests/realnode/test_warm_exec.py). ``protocols``: what the stand-in speaks (``("v4...",)`` is
an API server older than the stdin close); ``refuse``: answer the upgrade with that HTTP status
(403 is RBAC's no); ``paths``: arguments replaced before the command runs (a path in the pod,
such as /scratch/..., to its place in the stand-in's container). ``attached``: the container's
first process (started with stdin and stdout pipes), which ``pods/attach`` reaches: its stdin
is closed when the first attach ends (``stdinOnce``); without it the attach is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


@dataclass
class ExecEndpoint:
    container: Path
    env: dict[str, str] = field(default_factory=dict)
    protocols: tuple[str, ...] = (V5, V4)
    refuse: int | None = None
    paths: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)  # what was run, in order
    attached: subprocess.Popen[bytes] | None = None
    attaches: int = 0
    _attached: set[WebSocket] = field(default_factory=set)

    def app(self) -> Starlette:
        pods = "/api/v1/namespaces/{namespace}/pods/{pod}"
        routes = [
            WebSocketRoute(f"{pods}/exec", self._exec),
            WebSocketRoute(f"{pods}/attach", self._attach),
        ]
        return Starlette(routes=routes)

    async def _attach(self, ws: WebSocket) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        chosen = next((p for p in offered if p in self.protocols), None)
        proc = self.attached
        if self.refuse is not None or chosen is None or proc is None or proc.stdin is None:
            await ws.close(code=1008)  # the upgrade is refused (HTTP 403)
            return
        await ws.accept(subprotocol=chosen)
        await ws.send_bytes(b"\x01")  # as the API server does: each channel opens empty
        self.attaches += 1
        self._attached.add(ws)
        pumping = asyncio.create_task(self._pump_pipe(ws, proc))
        try:
            while True:
                message = await ws.receive_bytes()
                if message[:1] == b"\x00":
                    await asyncio.to_thread(_write, proc.stdin, message[1:])
        except (WebSocketDisconnect, ConnectionError, RuntimeError):
            pass
        finally:
            self._attached.discard(ws)
            pumping.cancel()
            proc.stdin.close()  # stdinOnce

    @property
    def open_attaches(self) -> int:
        return len(self._attached)

    async def drop_attaches(self) -> None:
        """Close every open attach from the server's side (as an API server that restarts)."""
        for ws in list(self._attached):
            await ws.close(code=1001)

    @staticmethod
    async def _pump_pipe(ws: WebSocket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        stdout: Any = proc.stdout  # a BufferedReader: read1 returns what the pipe has
        while chunk := await asyncio.to_thread(stdout.read1, 32 * 1024):
            await ws.send_bytes(b"\x01" + chunk)

    async def _exec(self, ws: WebSocket) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        chosen = next((p for p in offered if p in self.protocols), None)
        if self.refuse is not None or chosen is None:
            await ws.close(code=1008)  # before accept: the upgrade is refused (HTTP 403)
            return
        await ws.accept(subprotocol=chosen)
        command = [self.paths.get(a, a) for a in ws.query_params.getlist("command")]
        self.commands.append(command)
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=self.container,
            env={"PATH": os.environ["PATH"], **self.env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        feeding = asyncio.create_task(self._stdin(ws, proc, chosen))
        try:
            await asyncio.gather(self._pump(ws, proc.stdout, 1), self._pump(ws, proc.stderr, 2))
            code = await proc.wait()
            await ws.send_bytes(b"\x03" + json.dumps(_status(code)).encode())
            await ws.close()
        except (WebSocketDisconnect, ConnectionError, RuntimeError):
            pass  # the client went away; its command is killed below
        finally:
            feeding.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    @staticmethod
    async def _stdin(ws: WebSocket, proc: Any, protocol: str) -> None:
        try:
            while True:
                message = await ws.receive_bytes()
                if message[:1] == b"\x00":
                    proc.stdin.write(message[1:])
                    await proc.stdin.drain()
                elif message == b"\xff\x00" and protocol == V5:
                    proc.stdin.close()
        except (WebSocketDisconnect, ConnectionError, RuntimeError):
            if proc.returncode is None:  # the client went away: so does its command
                proc.kill()

    @staticmethod
    async def _pump(ws: WebSocket, stream: Any, channel: int) -> None:
        while chunk := await stream.read(32 * 1024):
            await ws.send_bytes(bytes((channel,)) + chunk)


def _write(stream: Any, data: bytes) -> None:
    stream.write(data)
    stream.flush()


def _status(code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
