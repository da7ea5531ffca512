"""Pure decisions of the Kubernetes backend: the pods it asks for and how it reads them back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.kubernetes.pod_runner import LOG_MARKER, compact
from agentkube.sandbox.kubernetes.rendering import (
    MAX_PAYLOAD_BYTES,
    REQUEST_ANNOTATION,
    PodSettings,
    deny_all_network_policy,
    render_job,
    render_warm_pod,
    result_from_pod,
    result_in_log,
    runner_source,
)

SETTINGS = PodSettings(namespace="sbx", runtime_class_name="gvisor")


def _pod_spec_of_job() -> dict:
    job = render_job("sbx-1", ExecutionRequest(code="print(1)"), SETTINGS)
    return job["spec"]["template"]["spec"]


def test_job_pod_is_locked_down_with_the_seed_limits() -> None:
    spec = _pod_spec_of_job()
    container = spec["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["restartPolicy"] == "Never"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    scratch = spec["volumes"][0]["emptyDir"]
    assert scratch["sizeLimit"] == "64Mi"


def test_job_never_retries_and_cleans_itself_up() -> None:
    request = ExecutionRequest(code="print(1)", limits=Limits(timeout_s=10))
    job = render_job("sbx-1", request, SETTINGS)["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] == 10 + SETTINGS.startup_grace_s
    assert job["ttlSecondsAfterFinished"] == SETTINGS.ttl_seconds_after_finished


def test_request_travels_in_the_pod_environment() -> None:
    env = _pod_spec_of_job()["containers"][0]["env"]
    assert env[0]["name"] == "AGENTKUBE_SANDBOX_REQUEST"
    assert json.loads(env[0]["value"])["code"] == "print(1)"


def test_warm_pod_reads_its_request_from_its_own_annotation() -> None:
    pod = render_warm_pod("sbx-warm-1", Limits(), SETTINGS)
    volume = pod["spec"]["volumes"][1]["downwardAPI"]["items"][0]
    assert REQUEST_ANNOTATION in volume["fieldRef"]["fieldPath"]
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_network_policy_denies_all_traffic_of_every_pod() -> None:
    spec = deny_all_network_policy(SETTINGS)["spec"]
    assert spec == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def _terminated(message: str = "", reason: str = "Completed", code: int = 0) -> dict:
    state = {"terminated": {"exitCode": code, "reason": reason, "message": message}}
    return {
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "sandbox", "state": state}]}
    }


def test_result_comes_from_the_termination_message() -> None:
    message = compact(
        {
            "exit": 2,
            "out": "hi\n",
            "err": "",
            "ms": 12.5,
            "killed": None,
            "trunc": False,
            "files": {"a.txt": "A"},
        }
    )
    result = result_from_pod(_terminated(message), 999)
    assert (result.exit_code, result.stdout, result.duration_ms) == (2, "hi\n", 12.5)
    assert result.files == {"a.txt": "A"}


def test_oom_killed_container_reports_the_memory_reason() -> None:
    result = result_from_pod(_terminated(reason="OOMKilled", code=137), 50)
    assert result.killed_reason == "memory"
    assert result.exit_code == 137


def test_deadline_exceeded_pod_reports_a_timeout() -> None:
    pod = {"status": {"phase": "Failed", "reason": "DeadlineExceeded"}}
    assert result_from_pod(pod, 50).killed_reason == "timeout"


def test_long_output_is_cut_to_the_termination_message_limit_and_marked() -> None:
    result = {
        "exit": 0,
        "out": 'é"x\n' * 5000,
        "err": "e" * 9000,
        "ms": 1.0,
        "killed": None,
        "trunc": False,
        "files": {"big": "b" * 9000},
    }
    message = compact(result)
    assert len(message.encode()) <= 4096
    data = json.loads(message)
    assert data["trunc"] is True and data["out"].startswith('é"x\n') and data["err"]


def test_result_comes_whole_from_the_log_line_when_the_message_says_so() -> None:
    whole = {
        "exit": 0,
        "out": "y" * 10000,
        "err": "",
        "ms": 3.0,
        "killed": None,
        "trunc": False,
        "files": {},
    }
    pod = _terminated(compact(whole))
    assert result_in_log(pod)
    assert not result_in_log(_terminated(compact(dict(whole, out="y"))))
    line = LOG_MARKER + json.dumps(whole)
    result = result_from_pod(pod, 99, line)
    assert (result.stdout, result.truncated, result.duration_ms) == ("y" * 10000, False, 3.0)
    # Anything but the runner's line (a log cut short, a kubelet that lost it) leaves the cut copy.
    for other in (None, "", "y" * 50, LOG_MARKER + '{"out": "yyy'):
        cut = result_from_pod(pod, 99, other)
        assert cut.truncated and 0 < len(cut.stdout) < 4096


def test_oversized_request_is_refused_before_reaching_the_cluster() -> None:
    from agentkube.sandbox.errors import SandboxRequestError
    from agentkube.sandbox.kubernetes import KubernetesSandbox

    sandbox = KubernetesSandbox(client=None)  # type: ignore[arg-type]  # never reached
    request = ExecutionRequest(code="x" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(SandboxRequestError, match="up to 98304 bytes"):
        asyncio.run(sandbox.execute(request))


def _run_runner(tmp_path: Path, request: dict) -> tuple[subprocess.CompletedProcess[str], dict]:
    """The pod runner as the pod runs it; its process and the termination message it wrote."""
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "AGENTKUBE_SANDBOX_REQUEST": json.dumps(request),
        "AGENTKUBE_TERMINATION_LOG": str(log),
    }
    run = subprocess.run(
        [sys.executable, "-c", runner_source()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    message = log.read_text()
    assert len(message.encode()) <= 4096
    return run, json.loads(message)


def test_pod_runner_runs_the_request_and_writes_a_termination_message(tmp_path: Path) -> None:
    request = {
        "language": "python",
        "code": "import os\nprint(open('in.txt').read())\n"
        "open('out/r.txt', 'w').write('R')\nraise SystemExit(4)",
        "files": {"in.txt": "input"},
        "env": {},
        "timeout_s": 10,
        "output_bytes": 1000,
    }
    run, data = _run_runner(tmp_path, request)
    assert (data["exit"], data["out"], data["files"]) == (4, "input\n", {"r.txt": "R"})
    assert "log" not in data
    assert run.stdout == run.stderr == ""  # the code's output goes to the result only


def test_pod_runner_puts_a_result_too_large_for_the_message_whole_in_one_log_line(
    tmp_path: Path,
) -> None:
    code = "import sys\nprint('x' * 20000)\nprint('é\\n' * 300, file=sys.stderr)"
    run, data = _run_runner(tmp_path, {"language": "python", "code": code})
    assert data["log"] is True and data["trunc"] is True
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(LOG_MARKER)
    whole = json.loads(lines[0][len(LOG_MARKER) :])
    assert whole["out"] == "x" * 20000 + "\n"
    assert whole["err"] == "é\n" * 300 + "\n"
    assert whole["trunc"] is False


def test_pod_runner_kills_code_at_its_timeout(tmp_path: Path) -> None:
    request = {"language": "bash", "code": "sleep 30", "timeout_s": 0.3}
    _, data = _run_runner(tmp_path, request)
    assert data["killed"] == "timeout" and data["exit"] is None
