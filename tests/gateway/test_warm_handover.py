"""The warm pod's exec handover without a cluster: the real pod runner waiting in a scratch
directory, the real handover command (``sh``, ``head``, ``cat``), and the gateway's exec client
speaking the Kubernetes channel protocol to a stand-in of the ``pods/exec`` endpoint on loopback
(tests/standins/exec_endpoint.py) that runs the command where the runner waits. The real
endpoint, kubelet and runtimes: tests/realnode/test_warm_exec.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.kubernetes import pod_runner
from agentkube.sandbox.kubernetes.pod_events import PodEvents
from agentkube.sandbox.kubernetes.pod_exec import ExecError, PodExec, exit_code
from agentkube.sandbox.kubernetes.rendering import (
    HANDOVER_DIRS,
    MAX_PAYLOAD_BYTES,
    WARM_LABEL,
    PodSettings,
    handover_command,
    handover_line,
    payload,
    result_from_json,
    runner_source,
)
from agentkube.sandbox.kubernetes.warm_pods import (
    LOST,
    NOT_OURS,
    OURS,
    Claim,
    ClaimLost,
    WarmPodPool,
)
from tests.standins.exec_endpoint import V4, V5, ExecEndpoint
from tests.standins.serving import serve

HANDOVER = Path(HANDOVER_DIRS[0]).name  # its place in the scratch directory


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


@pytest.fixture
def endpoint(scratch: Path) -> ExecEndpoint:
    return ExecEndpoint(container=scratch)


@pytest.fixture
def url(endpoint: ExecEndpoint) -> Iterator[str]:
    with serve(endpoint.app()) as base:
        yield base


@pytest.fixture
async def pod_exec(url: str) -> AsyncIterator[PodExec]:
    client = PodExec(httpx2.AsyncClient(base_url=url))
    yield client
    await client.aclose()


def _places(scratch: Path) -> list[str]:
    """The handover's two places, moved from /scratch and /tmp into the test's directory."""
    return [str(scratch / HANDOVER), str(scratch.parent / "tmp" / HANDOVER)]


def _runner(
    scratch: Path, request_file: Path, places: list[str] | None = None, *, stdin: bool = False
) -> subprocess.Popen[bytes]:
    """The pod runner as a warm pod starts it: waiting for its request file or the handover
    (``stdin``: on its stdin too, for pods/attach; its stdout is then a pipe)."""
    env = {
        **({pod_runner.HANDOVER_STDIN_ENV: "1"} if stdin else {}),
        pod_runner.REQUEST_FILE_ENV: str(request_file),
        pod_runner.HANDOVER_ENV: ":".join(places or _places(scratch)),
        "AGENTKUBE_TERMINATION_LOG": str(scratch.parent / "termination-log"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    return subprocess.Popen(
        [sys.executable, "-c", runner_source()],
        cwd=scratch,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdin else subprocess.DEVNULL,
    )


def _reap(runner: subprocess.Popen[bytes]) -> None:
    """Kill a runner started with pipes, and close them."""
    runner.kill()
    runner.wait()
    for pipe in (runner.stdin, runner.stdout):
        if pipe is not None and not pipe.closed:
            with contextlib.suppress(OSError):
                pipe.close()


def _command(scratch: Path, places: list[str] | None = None) -> list[str]:
    """The gateway's handover command, its places moved into the test's directory."""
    return [*handover_command()[:-2], *(places or _places(scratch))]


async def test_a_request_handed_over_by_exec_runs_once_and_its_result_streams_back(
    pod_exec: PodExec, scratch: Path
) -> None:
    runner = _runner(scratch, scratch.parent / "annotation")  # the annotation never comes
    try:
        request = ExecutionRequest(code="import os; print(6 * 7); print(sorted(os.listdir('.')))")
        output = await pod_exec.run(
            "ns", "pod", "sandbox", _command(scratch), handover_line(request),
            max_stdout=1 << 20, time_limit_s=30,
        )  # fmt: skip
        assert runner.wait(timeout=30) == 0
    finally:
        runner.kill()
    assert (output.exit_code, output.protocol) == (0, V5)
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None, output
    assert (result.exit_code, result.stdout.splitlines()[0]) == (0, "42")
    # The code never saw the FIFOs: the runner removed them before it started the code.
    assert HANDOVER not in result.stdout and not (scratch / HANDOVER).exists()
    # The termination message has the same result, for a gateway whose exec broke off.
    message = json.loads((scratch.parent / "termination-log").read_text())
    assert message["out"] == result.stdout


async def test_an_api_server_that_speaks_only_v4_still_hands_over_one_line(
    endpoint: ExecEndpoint, pod_exec: PodExec, scratch: Path
) -> None:
    # v4 cannot close stdin: the handover command ends its input at the request's newline.
    endpoint.protocols = (V4,)
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        output = await pod_exec.run(
            "ns", "pod", "sandbox", _command(scratch),
            handover_line(ExecutionRequest(code="print('over v4')")),
            max_stdout=1 << 20, time_limit_s=30,
        )  # fmt: skip
    finally:
        runner.wait(timeout=30)
    assert output.protocol == V4
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None and result.stdout == "over v4\n", output


async def test_a_runner_without_an_exec_still_takes_its_request_from_the_annotation(
    scratch: Path,
) -> None:
    annotation = scratch.parent / "annotation"
    runner = _runner(scratch, annotation)
    deadline = time.monotonic() + 20
    while not (scratch / HANDOVER).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (scratch / HANDOVER / "request").is_fifo()
    annotation.write_text(payload(ExecutionRequest(code="print('by annotation')")))
    assert runner.wait(timeout=30) == 0
    message = json.loads((scratch.parent / "termination-log").read_text())
    assert message["out"] == "by annotation\n"
    assert not (scratch / HANDOVER).exists()


async def test_where_the_scratch_volume_holds_no_fifos_the_handover_uses_the_second_place(
    pod_exec: PodExec, scratch: Path
) -> None:
    # (gVisor: a volume of the host may refuse mkfifo; its own /tmp does not.) Here the first
    # place's parent is missing; the command finds the FIFOs in the second.
    second = scratch.parent / "tmp"
    second.mkdir()
    places = [str(scratch / "missing" / HANDOVER), str(second / HANDOVER)]
    runner = _runner(scratch, scratch.parent / "annotation", places)
    try:
        output = await pod_exec.run(
            "ns", "pod", "sandbox", _command(scratch, places),
            handover_line(ExecutionRequest(code="print('second place')")),
            max_stdout=1 << 20, time_limit_s=30,
        )  # fmt: skip
    finally:
        runner.wait(timeout=30)
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None and result.stdout == "second place\n", output
    assert not (second / HANDOVER).exists() and not (scratch / "missing").exists()


async def test_the_runner_refuses_a_handed_over_line_longer_than_any_request(
    pod_exec: PodExec, scratch: Path
) -> None:
    # The gateway never sends one (it refuses such a request first, 422); whoever else could
    # exec into the pod still cannot make the runner hold more than the limit.
    runner = _runner(scratch, scratch.parent / "annotation")
    line = b'{"language":"python","code":"' + b"x" * (MAX_PAYLOAD_BYTES + 10) + b'"}\n'
    try:
        output = await pod_exec.run(
            "ns", "pod", "sandbox", _command(scratch), line, max_stdout=1 << 20, time_limit_s=30
        )
    finally:
        runner.wait(timeout=30)
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None, output
    assert result.exit_code is None and "longer than 98304 bytes" in result.stderr
    assert not (scratch / ".agentkube").exists(), "nothing of the request was run"


async def test_the_command_waits_for_a_runner_that_is_still_starting(
    pod_exec: PodExec, scratch: Path
) -> None:
    started = time.monotonic()
    call = pod_exec.run(
        "ns", "pod", "sandbox", _command(scratch),
        handover_line(ExecutionRequest(code="print('late')")), max_stdout=1 << 20,
        time_limit_s=30,
    )  # fmt: skip
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.5)  # the pod is Running, its runner not up yet
    assert not task.done()
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        output = await task
    finally:
        runner.wait(timeout=30)
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None and result.stdout == "late\n", output
    assert time.monotonic() - started > 0.5


async def test_exit_codes_stdout_and_stderr_come_back_on_their_channels(
    pod_exec: PodExec,
) -> None:
    output = await pod_exec.run(
        "ns", "pod", "sandbox", ["sh", "-c", "head -n 1; echo oops >&2; exit 3"], b"hello\n",
        max_stdout=100, time_limit_s=10,
    )  # fmt: skip
    assert (output.stdout, output.stderr, output.exit_code) == (b"hello\n", b"oops\n", 3)


async def test_a_refused_upgrade_is_an_exec_error_that_says_forbidden(
    endpoint: ExecEndpoint, pod_exec: PodExec
) -> None:
    endpoint.refuse = 403
    with pytest.raises(ExecError, match="HTTP 403") as refused:
        await pod_exec.run("ns", "pod", "c", ["true"], b"", max_stdout=10, time_limit_s=10)
    assert refused.value.forbidden
    assert endpoint.commands == []


async def test_output_past_the_cap_and_a_command_past_its_time_limit_are_errors(
    pod_exec: PodExec,
) -> None:
    with pytest.raises(ExecError, match="more than 1000 bytes"):
        await pod_exec.run(
            "ns", "p", "c", ["sh", "-c", "head -c 5000 /dev/zero"], b"", max_stdout=1000,
            time_limit_s=10,
        )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(ExecError, match=r"did not end within 0\.5 s"):
        await pod_exec.run("ns", "p", "c", ["sleep", "10"], b"", max_stdout=1000, time_limit_s=0.5)
    assert time.monotonic() - started < 5


def test_exit_code_reads_the_status_the_api_server_sends() -> None:
    assert exit_code({"status": "Success"}) == 0
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "4"}]},
    }
    assert exit_code(failure) == 4
    with pytest.raises(ExecError, match="container not found"):
        exit_code({"status": "Failure", "reason": "Internal", "message": "container not found"})


def _pool(pod_exec: PodExec) -> tuple[WarmPodPool, AsyncClient]:
    """A warm pool whose only use here is its handover (no API server behind its client)."""
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    client = AsyncClient(config=KubeConfig.from_dict(config))
    events = PodEvents(client, namespace="ns", gateway="gw")
    pool = WarmPodPool(client, events, PodSettings(namespace="ns"), 1, Limits(), pod_exec=pod_exec)
    return pool, client


def _claim(outcome: str = OURS) -> Claim:
    """A claim of pod ``pod`` whose patch's answer said ``outcome``."""

    async def patched() -> str:
        return outcome

    return Claim(name="pod", by_exec=True, confirmed=asyncio.ensure_future(patched()))


async def test_a_pool_refused_exec_stops_trying_and_says_so_once(
    endpoint: ExecEndpoint, pod_exec: PodExec, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.refuse = 403
    pool, client = _pool(pod_exec)
    caplog.set_level(logging.WARNING, logger="agentkube.sandbox.kubernetes.warm_pods")
    request = ExecutionRequest(code="print(1)")
    assert pool.hands_over_by_exec
    assert await pool.hand_over(_claim(), request, 1 << 20) is None
    assert not pool.hands_over_by_exec  # the next claims write the annotation
    assert await pool.hand_over(_claim(), request, 1 << 20) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one line each: attach, then exec
    assert "pods/attach is not allowed" in lines[0] and "pods/exec is not allowed" in lines[1]
    await client.close()


async def test_code_that_kills_its_runner_does_not_stop_the_pool_s_handovers(
    endpoint: ExecEndpoint, pod_exec: PodExec, scratch: Path
) -> None:
    # Hostile code can break its own handover (here: it kills the runner, as running out of
    # memory does under gVisor); the result then comes from the pod, and the next claims still
    # go by exec. Only handovers that reach no runner count towards giving up.
    endpoint.paths = dict(zip(HANDOVER_DIRS, _places(scratch), strict=True))
    pool, client = _pool(pod_exec)
    kill = ExecutionRequest(code="import os, signal; os.kill(os.getppid(), signal.SIGKILL)")
    try:
        for _ in range(4):
            runner = _runner(scratch, scratch.parent / "annotation")
            assert await pool.hand_over(_claim(), kill, 1 << 20) is None
            runner.wait(timeout=30)
        assert pool.hands_over_by_exec
        runner = _runner(scratch, scratch.parent / "annotation")
        result = await pool.hand_over(_claim(), ExecutionRequest(code="print('next')"), 1 << 20)
        runner.wait(timeout=30)
    finally:
        await client.close()
    assert result is not None and result.stdout == "next\n", result
    assert pool.handovers == 1


async def test_a_claim_that_is_not_ours_withholds_the_request_and_the_runner_waits_on(
    endpoint: ExecEndpoint, pod_exec: PodExec, scratch: Path
) -> None:
    # The exec opens while the claim's patch is under way; the request goes in only once the
    # patch's answer shows the pod this gateway's. Otherwise the exec gets an empty line and
    # ends, nothing of the request reaches the pod, and its runner waits for a real claim.
    endpoint.paths = dict(zip(HANDOVER_DIRS, _places(scratch), strict=True))
    pool, client = _pool(pod_exec)
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        secret = ExecutionRequest(code="print('never run')")
        assert await pool.hand_over(_claim(NOT_OURS), secret, 1 << 20) is None
        with pytest.raises(ClaimLost):
            await pool.hand_over(_claim(LOST), secret, 1 << 20)
        assert runner.poll() is None and not (scratch / ".agentkube").exists()
        assert len(endpoint.commands) == 2  # both execs ran, and ended
        result = await pool.hand_over(_claim(), ExecutionRequest(code="print('ours')"), 1 << 20)
        assert runner.wait(timeout=30) == 0
    finally:
        runner.kill()
        await client.close()
    assert result is not None and result.stdout == "ours\n", result
    assert pool.hands_over_by_exec and pool.handovers == 1


async def _hand_over(
    pod_exec: PodExec, scratch: Path, request: ExecutionRequest
) -> ExecutionResult:
    output = await pod_exec.run(
        "ns", "pod", "sandbox", _command(scratch), handover_line(request), max_stdout=1 << 20,
        time_limit_s=30,
    )  # fmt: skip
    result = result_from_json(output.stdout.decode(), 0.0)
    assert result is not None, output
    return result


PROCESS_AGE = """
import os
ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])
uptime = float(open('/proc/uptime').read().split()[0])
print(round(uptime - ticks / os.sysconf('SC_CLK_TCK'), 1), sorted(os.listdir('/proc/self/fd')))
print(sorted(k for k in globals() if not k.startswith('__')), os.environ.get('GREETING'))
"""


async def test_a_warm_pod_s_code_runs_in_an_interpreter_started_with_the_pod(
    pod_exec: PodExec, scratch: Path
) -> None:
    # The request does not pay the interpreter's start: it was started with the runner, and it
    # holds no descriptor of the runner's (no FIFO, no pipe but its stdio), only the code's
    # names, and the request's environment.
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        await asyncio.sleep(1.5)
        request = ExecutionRequest(code=PROCESS_AGE, env={"GREETING": "hi"})
        result = await _hand_over(pod_exec, scratch, request)
    finally:
        runner.wait(timeout=30)
    age, fds = result.stdout.splitlines()[0].split(" ", 1)
    assert float(age) >= 1.0, result.stdout
    assert fds == "['0', '1', '2', '3']", result.stdout  # 3: the listing's own
    assert result.stdout.splitlines()[1] == "['os', 'ticks', 'uptime'] hi"


async def test_a_warm_pod_s_code_sees_its_traceback_from_the_script_and_its_exit_code(
    pod_exec: PodExec, scratch: Path
) -> None:
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        code = "import sys\ndef f():\n    1 / 0\nprint(sys.argv, __name__)\nf()"
        result = await _hand_over(pod_exec, scratch, ExecutionRequest(code=code))
    finally:
        runner.wait(timeout=30)
    assert result.exit_code == 1 and result.stdout == "['.agentkube/main.py'] __main__\n"
    assert result.stderr.splitlines()[:2] == [
        "Traceback (most recent call last):",
        '  File ".agentkube/main.py", line 5, in <module>',
    ], result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


async def test_a_request_that_sets_what_python_reads_at_start_gets_a_new_interpreter(
    pod_exec: PodExec, scratch: Path
) -> None:
    runner = _runner(scratch, scratch.parent / "annotation")
    try:
        code = "import sys; print(sys.flags.hash_randomization, sys.flags.dont_write_bytecode)"
        env = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        result = await _hand_over(pod_exec, scratch, ExecutionRequest(code=code, env=env))
    finally:
        runner.wait(timeout=30)
    assert result.stdout == "0 1\n", result


@pytest.fixture
async def attached(
    endpoint: ExecEndpoint, pod_exec: PodExec, scratch: Path
) -> AsyncIterator[tuple[WarmPodPool, subprocess.Popen[bytes]]]:
    """A pool, and a runner waiting with its stdin open to the stand-in's ``pods/attach`` (and
    its FIFOs to its ``pods/exec``)."""
    endpoint.paths = dict(zip(HANDOVER_DIRS, _places(scratch), strict=True))
    pool, client = _pool(pod_exec)
    runner = _runner(scratch, scratch.parent / "annotation", stdin=True)
    endpoint.attached = runner
    try:
        yield pool, runner
    finally:
        _reap(runner)
        await pool.aclose()
        await client.close()


async def _attached(endpoint: ExecEndpoint, count: int) -> None:
    for _ in range(500):
        if endpoint.attaches >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{endpoint.attaches} attaches, {count} expected")


def _running(name: str) -> dict[str, object]:
    labels = {WARM_LABEL: "ready"}
    return {"metadata": {"name": name, "labels": labels}, "status": {"phase": "Running"}}


async def test_a_pool_attaches_to_the_runner_s_stdin_and_runs_no_process_in_the_pod(
    endpoint: ExecEndpoint, attached: tuple[WarmPodPool, subprocess.Popen[bytes]], scratch: Path
) -> None:
    pool, runner = attached
    result = await pool.hand_over(_claim(), ExecutionRequest(code="print(6 * 7)"), 1 << 20)
    assert runner.wait(timeout=30) == 0
    assert result is not None and (result.exit_code, result.stdout) == (0, "42\n"), result
    assert (endpoint.attaches, endpoint.commands, pool.handovers) == (1, [], 1)
    message = json.loads((scratch.parent / "termination-log").read_text())
    assert message["out"] == "42\n"  # for a gateway whose attach broke off


async def test_an_attach_whose_claim_is_not_ours_sends_nothing_and_the_pod_can_still_be_exec_d(
    endpoint: ExecEndpoint, attached: tuple[WarmPodPool, subprocess.Popen[bytes]], scratch: Path
) -> None:
    # The withheld attach ends the runner's stdin (stdinOnce): it keeps its FIFO handover.
    pool, runner = attached
    secret = ExecutionRequest(code="print('never run')")
    assert await pool.hand_over(_claim(NOT_OURS), secret, 1 << 20) is None
    assert runner.poll() is None and not (scratch / ".agentkube").exists()
    endpoint.attached = None  # the container's stdin is closed: attaching is refused now
    result = await pool.hand_over(_claim(), ExecutionRequest(code="print('ours')"), 1 << 20)
    assert runner.wait(timeout=30) == 0
    assert result is not None and result.stdout == "ours\n", result
    assert endpoint.attaches == 1 and len(endpoint.commands) == 1


async def test_a_ready_pod_s_attach_is_open_before_its_claim_and_carries_the_request(
    endpoint: ExecEndpoint, attached: tuple[WarmPodPool, subprocess.Popen[bytes]]
) -> None:
    pool, runner = attached
    pool._observe(_running("pod"), False)
    await _attached(endpoint, 1)  # opened while the pod waits, before any claim
    claim = dataclasses.replace(_claim(), held=pool._held.pop("pod"))
    result = await pool.hand_over(claim, ExecutionRequest(code="print(6 * 7)"), 1 << 20)
    assert runner.wait(timeout=30) == 0
    assert result is not None and (result.exit_code, result.stdout) == (0, "42\n"), result
    assert (endpoint.attaches, endpoint.commands, pool.handovers) == (1, [], 1)


async def test_a_held_attach_that_closed_leaves_the_request_to_exec(
    endpoint: ExecEndpoint, attached: tuple[WarmPodPool, subprocess.Popen[bytes]]
) -> None:
    # The attach closed while held (the API server restarted, say): nothing was sent on it, its
    # end closed the runner's stdin (stdinOnce), and the request goes in by exec instead.
    pool, runner = attached
    pool._observe(_running("pod"), False)
    await _attached(endpoint, 1)
    await endpoint.drop_attaches()
    endpoint.attached = None  # its stdin is closed: a new attach would be refused
    claim = dataclasses.replace(_claim(), held=pool._held.pop("pod"))
    result = await pool.hand_over(claim, ExecutionRequest(code="print('by exec')"), 1 << 20)
    assert runner.wait(timeout=30) == 0
    assert result is not None and result.stdout == "by exec\n", result
    assert endpoint.attaches == 1 and len(endpoint.commands) == 1


async def test_a_pod_that_goes_before_its_claim_has_its_held_attach_closed(
    endpoint: ExecEndpoint, attached: tuple[WarmPodPool, subprocess.Popen[bytes]]
) -> None:
    pool, runner = attached
    pool._observe(_running("pod"), False)
    await _attached(endpoint, 1)
    pool._observe(_running("pod"), True)  # deleted
    assert "pod" not in pool._held
    await asyncio.gather(*pool._closing)
    for _ in range(500):  # the stand-in sees the close a moment later
        if endpoint.open_attaches == 0:
            break
        await asyncio.sleep(0.01)
    assert endpoint.open_attaches == 0 and runner.poll() is None  # nothing was sent


async def test_a_claim_takes_the_pod_that_has_been_ready_longest(pod_exec: PodExec) -> None:
    # A pod that has only just become Running may still be starting its runner.
    pool, client = _pool(pod_exec)
    for name in ("older", "newer"):
        pool._observe(_running(name), False)
    try:
        claim = await pool.claim(ExecutionRequest(code="print(1)"))
        assert claim is not None and claim.name == "older"
        assert claim.confirmed is not None and claim.held is not None
        assert claim.held.pod == "older"
        assert await claim.confirmed == LOST  # (no API server behind this pool's client)
        await claim.held.aclose()
    finally:
        await pool.aclose()
        await client.close()
