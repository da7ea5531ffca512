"""One command in a pod through the API server's ``pods/exec`` subresource, over WebSocket.

The Kubernetes channel protocols: every binary message starts with its channel — 0 stdin,
1 stdout, 2 stderr, 3 the command's end as a ``metav1.Status`` (``Success``, or ``Failure`` with
reason ``NonZeroExitCode`` and the exit code in ``details.causes``) — and ``v5.channel.k8s.io``
adds 255, closing a channel (stdin's end of file). ``v4.channel.k8s.io``, which older API
servers speak, cannot close stdin: a command run here must know where its input ends by itself
(the warm pod's handover reads one line), so either protocol works.

The connection is made with httpx2 (lightkube's own HTTP client, which speaks WebSocket) from
the lightkube client's configuration: the same server, CA, client certificate or rotating
ServiceAccount token as every other call of the gateway. Since Kubernetes 1.35 a WebSocket exec
is authorized as both ``get`` and ``create`` on ``pods/exec`` (before, ``get`` only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx2
from httpx2.websockets import HTTPXWSException, WebSocketDisconnect, WebSocketUpgradeError
from lightkube import AsyncClient
from wsproto.utilities import LocalProtocolError  # httpx2's WebSocket protocol engine

JSON = dict[str, Any]
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, STATUS, CLOSE = 0, 1, 2, 3, 255
STDERR_KEPT = 64 * 1024  # of a command's stderr: enough to say what went wrong
MESSAGE_BYTES = 1 << 20  # the API server sends output in frames of 32 KiB or less
WITHHELD_WAIT_S = 2.0  # for a command given the withheld input to end
CLOSE_WAIT_S = 5.0  # for a held attach closed unused to close its connection
# Decides, once the connection is open, whether the command gets its stdin (True) or the other
# input (False), which should make it end at once.
Gate = tuple[Callable[[], Awaitable[bool]], bytes]


class ExecError(Exception):
    """The command could not be run, or its connection broke off before it ended.

    ``status_code``: the API server's HTTP status when it refused the upgrade (403: RBAC);
    ``started``: whether the command had started (the connection was upgraded) when it failed;
    ``withheld``: the run's gate said no, and the command got the withheld input instead.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        started: bool = False,
        withheld: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.started = started
        self.withheld = withheld

    @property
    def forbidden(self) -> bool:
        return self.status_code == 403


@dataclass(frozen=True, kw_only=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int
    protocol: str


def exit_code(status: JSON) -> int:
    """The exit code a channel-3 ``Status`` reports; ExecError for a failure that is not one."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    break
        return -1
    raise ExecError(f"the exec failed: {status.get('message') or status.get('reason') or status}")


def _unwrap(error: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups (the WebSocket session's task group)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class PodExec:
    """Runs commands in pods; ``http`` is an httpx2 client for the API server (a seam)."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self._http = http

    @classmethod
    def of(cls, client: AsyncClient) -> PodExec:
        """Exec with the connection settings and credentials of a lightkube client."""
        from lightkube.config.client_adapter import AsyncClient as http_client
        from lightkube.config.client_adapter import ConnectionParams

        return cls(http_client(client.config, ConnectionParams(timeout=httpx2.Timeout(10.0))))

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: bytes,
        *,
        max_stdout: int,
        time_limit_s: float,
        gate: Gate | None = None,
    ) -> ExecOutput:
        """Run ``command``, pass it ``stdin``, and collect its output until it ends.

        ``gate``: the connection is opened at once, ``stdin`` sent only if the gate's check
        (awaited once the command runs) says so; else the gate's input is (ExecError,
        ``withheld``). ExecError when the API server refuses (``status_code``), the connection
        breaks, the stdout passes ``max_stdout`` bytes or ``time_limit_s`` seconds pass.
        """
        params = {
            "container": container,
            "command": list(command),
            "stdin": "true",
            "stdout": "true",
            "stderr": "true",
        }
        return await self._session(
            namespace, pod, "exec", params, stdin,
            max_stdout=max_stdout, time_limit_s=time_limit_s, gate=gate, one_line=False,
        )  # fmt: skip

    async def attach(
        self,
        namespace: str,
        pod: str,
        container: str,
        stdin: bytes,
        *,
        max_stdout: int,
        time_limit_s: float,
        gate: Gate | None = None,
    ) -> ExecOutput:
        """Attach to the running ``container`` (``pods/attach``; the container has ``stdin:
        true``), pass its first process ``stdin`` and collect its stdout up to the end of the
        first line, when the session ends (``exit_code`` 0). Errors and ``gate`` as :meth:`run`.
        """
        params = {"container": container, "stdin": "true", "stdout": "true", "stderr": "false"}
        return await self._session(
            namespace, pod, "attach", params, stdin,
            max_stdout=max_stdout, time_limit_s=time_limit_s, gate=gate, one_line=True,
        )  # fmt: skip

    def hold_attach(self, namespace: str, pod: str, container: str) -> HeldAttach:
        """Open an attach to ``container`` now and hold it until :meth:`HeldAttach.send`."""
        return HeldAttach(self, namespace, pod, container)

    def _connect(self, namespace: str, pod: str, subresource: str, params: JSON) -> Any:
        """The WebSocket session of ``pods/<subresource>`` (an async context manager)."""
        return self._http.websocket(
            f"/api/v1/namespaces/{namespace}/pods/{pod}/{subresource}",
            subprotocols=list(PROTOCOLS),
            params=params,
            max_message_size_bytes=MESSAGE_BYTES,
        )

    async def _session(
        self,
        namespace: str,
        pod: str,
        subresource: str,
        params: JSON,
        stdin: bytes,
        *,
        max_stdout: int,
        time_limit_s: float,
        gate: Gate | None,
        one_line: bool,
    ) -> ExecOutput:
        started = False
        try:
            async with asyncio.timeout(time_limit_s):
                async with self._connect(namespace, pod, subresource, params) as ws:
                    started = True
                    outcome = await _exchange(ws, stdin, max_stdout, gate, one_line)
        except BaseException as e:
            _raise_translated(e, pod, time_limit_s, started)
        return _output(outcome)

    async def aclose(self) -> None:
        await self._http.aclose()


@dataclass(frozen=True)
class _Turn:
    """What a held attach is given to send (:meth:`HeldAttach.send`)."""

    stdin: bytes
    max_stdout: int
    time_limit_s: float
    gate: Gate | None


class HeldAttach:
    """An attach to a warm pod's runner, opened while the pod waits and held until its claim:
    the request line then goes into a connection that is already open, and the claim pays
    neither the connection nor the API server's, kubelet's and runtime's attach set-up.

    One request at most (the runner takes one, and ``stdinOnce`` closes its stdin when this
    attach ends). :meth:`send` raises ExecError as :meth:`PodExec.attach` does, with
    ``started`` False when nothing was sent (the attach never opened, or closed while held), so
    the caller may still hand the request over by exec.
    """

    def __init__(self, pod_exec: PodExec, namespace: str, pod: str, container: str) -> None:
        self.pod = pod
        loop = asyncio.get_running_loop()
        self._turn: asyncio.Future[_Turn] = loop.create_future()
        params = {"container": container, "stdin": "true", "stdout": "true", "stderr": "false"}
        self._task = loop.create_task(self._hold(pod_exec, namespace, params), name=f"attach-{pod}")

    async def send(
        self, stdin: bytes, *, max_stdout: int, time_limit_s: float, gate: Gate | None = None
    ) -> ExecOutput:
        """Pass the runner ``stdin`` (a line) and collect its stdout's first line."""
        if self._turn.done():
            raise ExecError(f"the attach to {self.pod} was already used or closed")
        self._turn.set_result(_Turn(stdin, max_stdout, time_limit_s, gate))
        return await self._task

    async def aclose(self) -> None:
        """Close the attach unused (nothing was sent: the runner keeps its other handovers).

        The held session ends by itself once it sees its turn withdrawn, so that its WebSocket
        closes as it should (a cancelled one may leave its connection open); it is cancelled
        only if it does not end within :data:`CLOSE_WAIT_S` (still connecting, say)."""
        if not self._turn.done():
            self._turn.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT_S)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _hold(self, pod_exec: PodExec, namespace: str, params: JSON) -> ExecOutput:
        turn: _Turn | None = None
        try:
            async with pod_exec._connect(namespace, self.pod, "attach", params) as ws:
                turn = await self._wait_turn(ws)
                async with asyncio.timeout(turn.time_limit_s):
                    outcome = await _exchange(
                        ws, turn.stdin, turn.max_stdout, turn.gate, one_line=True
                    )
        except BaseException as e:
            limit_s = turn.time_limit_s if turn is not None else 0.0
            _raise_translated(e, self.pod, limit_s, turn is not None)
        return _output(outcome)

    async def _wait_turn(self, ws: Any) -> _Turn:
        """The claim's request, unless the attach closes first (the runner says nothing before
        its request, so output received while held is the end too)."""
        closed = asyncio.ensure_future(_until_output(ws))
        try:
            await asyncio.wait((self._turn, closed), return_when=asyncio.FIRST_COMPLETED)
            if not closed.done():
                if self._turn.cancelled():
                    raise ExecError(f"the attach to {self.pod} was closed unused")
                return self._turn.result()
        finally:
            if not closed.done():
                closed.cancel()
                with contextlib.suppress(BaseException):
                    await closed
        reason = closed.exception() or "it sent output"
        raise ExecError(f"the attach to {self.pod} closed while held ({reason})")


def _output(outcome: ExecOutput | str) -> ExecOutput:
    if isinstance(outcome, str):
        raise ExecError(outcome, started=True)
    return outcome


async def _until_output(ws: Any) -> bytes:
    """The first message with data; the empty one the API server sends on each channel as it
    opens is skipped. WebSocketDisconnect when the connection closes first."""
    while True:
        message: bytes = await ws.receive_bytes()
        if len(message) > 1:
            return message


def _raise_translated(
    error: BaseException, pod: str, time_limit_s: float, started: bool
) -> NoReturn:
    """Raise a session's exception as its ExecError, or as it is (not ours)."""
    translated = _translate(_unwrap(error), pod, time_limit_s, started)
    if translated is None:
        raise error
    raise translated from _unwrap(error)


def _translate(
    error: BaseException, pod: str, time_limit_s: float, started: bool
) -> ExecError | None:
    """The ExecError an exception of the exec means, or None (not ours: re-raised as it is)."""
    if isinstance(error, ExecError):
        return error
    if isinstance(error, WebSocketUpgradeError):
        code = error.response.status_code
        return ExecError(f"the API server refused to exec in {pod}: HTTP {code}", status_code=code)
    if isinstance(error, TimeoutError):
        message = f"the exec in {pod} did not end within {time_limit_s:g} s"
        return ExecError(message, started=started)
    if isinstance(error, HTTPXWSException | httpx2.HTTPError | OSError):
        return ExecError(f"the exec in {pod} failed: {error!r}", started=started)
    return None


async def _exchange(
    ws: Any, stdin: bytes, max_stdout: int, gate: Gate | None, one_line: bool
) -> ExecOutput | str:
    """Send stdin, read the channels until the status (or, ``one_line``, the end of stdout's
    first line); the output, or what went wrong."""
    protocol = ws.subprotocol
    if protocol not in PROTOCOLS:
        return f"the API server speaks no channel protocol of ours (it chose {protocol!r})"
    if gate is not None and not await gate[0]():
        await _withhold(ws, protocol, gate[1])
    await _send(ws, protocol, stdin)
    return await _collect(ws, protocol, max_stdout, one_line)


async def _collect(ws: Any, protocol: str, max_stdout: int, one_line: bool) -> ExecOutput | str:
    """Read the channels until the status (or, ``one_line``, the end of stdout's first line)."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        try:
            message = await ws.receive_bytes()
        except WebSocketDisconnect as e:
            return f"the exec's connection closed before the command ended ({e.code} {e.reason})"
        channel, data = (message[0], message[1:]) if message else (None, b"")
        if channel == STDOUT:
            stdout += data
            if len(stdout) > max_stdout:
                return f"the command wrote more than {max_stdout} bytes"
            if one_line and b"\n" in data:
                return ExecOutput(
                    stdout=bytes(stdout), stderr=bytes(stderr), exit_code=0, protocol=protocol
                )
        elif channel == STDERR:
            stderr += data[: max(0, STDERR_KEPT - len(stderr))]
        elif channel == STATUS:
            code = _status_code(data)
            if isinstance(code, str):
                return code
            return ExecOutput(
                stdout=bytes(stdout), stderr=bytes(stderr), exit_code=code, protocol=protocol
            )


async def _send(ws: Any, protocol: str, stdin: bytes) -> None:
    """The command's whole stdin, and its end of file where the protocol can say so; ExecError
    (not ``started``: nothing reached the command) when the connection closed before it."""
    try:
        await ws.send_bytes(bytes((STDIN,)) + stdin)
    except (HTTPXWSException, LocalProtocolError, OSError) as e:  # (closing: wsproto's error)
        raise ExecError(f"the connection closed before the input was sent ({e!r})") from e
    if protocol == PROTOCOLS[0]:
        await ws.send_bytes(bytes((CLOSE, STDIN)))


async def _withhold(ws: Any, protocol: str, instead: bytes) -> None:
    """Send ``instead`` of the command's stdin, wait (a little) for it to end, raise."""
    await _send(ws, protocol, instead)
    with contextlib.suppress(TimeoutError, WebSocketDisconnect):
        async with asyncio.timeout(WITHHELD_WAIT_S):
            while (await ws.receive_bytes())[:1] != bytes((STATUS,)):
                pass
    raise ExecError("the command's input was withheld", started=True, withheld=True)


def _status_code(data: bytes) -> int | str:
    """The exit code in a channel-3 message, or what is wrong with it."""
    try:
        status = json.loads(data)
    except ValueError:
        return f"the exec ended with an unreadable status: {data[:200]!r}"
    try:
        return exit_code(status if isinstance(status, dict) else {})
    except ExecError as e:
        return str(e)
