"""The Kubernetes backend on the real control plane: Jobs, deadlines, admission, clean-up.

Pods run in real containers on the test cluster's real node (containerd; each test once on runc
and once on gVisor); Job control, deadlines, TTL, garbage collection and Pod Security admission
are the real kube-controller-manager's and kube-apiserver's, OOM kills and timeouts the kernel's
(or gVisor's) and the kubelet's.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hack.testcluster.realnode import Info as RealNodeInfo
from lightkube import AsyncClient

from agentkube.sandbox.contract import ExecutionRequest, Limits
from agentkube.sandbox.kubernetes import KubernetesSandbox
from agentkube.sandbox.kubernetes.pod_events import PodEvents
from agentkube.sandbox.kubernetes.rendering import (
    GATEWAY_LABEL,
    RUNTIME_CLASS_AUTO,
    PodSettings,
    render_job,
    render_warm_pod,
)
from agentkube.sandbox.kubernetes.runtime_class import choose_runtime_class
from tests.plugins.testcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]


def _left(testcluster: Cluster, settings: PodSettings) -> list[str]:
    selector = f"{GATEWAY_LABEL}={settings.gateway}"
    items = testcluster.kubectl_json("get", "jobs,pods", "-n", settings.namespace, "-l", selector)[
        "items"
    ]
    return [f"{i['kind']}/{i['metadata']['name']}" for i in items]


def _nothing_left(testcluster: Cluster, settings: PodSettings, timeout: float = 60) -> None:
    testcluster.wait_until(
        lambda: not _left(testcluster, settings),
        f"no Job or pod of gateway {settings.gateway} left",
        timeout=timeout,
    )


async def test_result_round_trips_through_a_job_and_nothing_is_left(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    try:
        result = await sandbox.execute(
            ExecutionRequest(
                code="import os, sys\nprint(open('in.txt').read(), os.environ['GREETING'])\n"
                "print('to stderr', file=sys.stderr)\nopen('out/o.txt', 'w').write('O')\n"
                "raise SystemExit(5)",
                files={"in.txt": "hello"},
                env={"GREETING": "world"},
            )
        )
    finally:
        await sandbox.aclose()
    assert result.exit_code == 5
    assert result.stdout == "hello world\n"
    assert result.stderr == "to stderr\n"
    assert result.files == {"o.txt": "O"}
    _nothing_left(testcluster, pod_settings)


async def test_code_past_its_timeout_is_killed_and_reported_as_timeout(
    kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    try:
        result = await sandbox.execute(
            ExecutionRequest(code="import time; time.sleep(60)", limits=Limits(timeout_s=1))
        )
    finally:
        await sandbox.aclose()
    assert result.killed_reason == "timeout"
    assert result.exit_code is None


async def test_job_deadline_ends_a_pod_that_never_reports(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    # No start-up grace: the Job's activeDeadlineSeconds (enforced by the real Job controller)
    # runs out before the runner's own timeout does.
    settings = PodSettings(**{**pod_settings.__dict__, "startup_grace_s": 0})
    sandbox = KubernetesSandbox(kube_client, settings)
    try:
        result = await sandbox.execute(
            ExecutionRequest(code="sleep 60", language="bash", limits=Limits(timeout_s=2))
        )
    finally:
        await sandbox.aclose()
    assert result.killed_reason == "timeout"
    assert "DeadlineExceeded" in result.stderr
    _nothing_left(testcluster, settings)


async def test_code_over_its_memory_limit_is_reported_as_oom_killed(
    kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    try:
        result = await sandbox.execute(
            ExecutionRequest(code="x = bytearray(512 * 1024 * 1024)\nprint(len(x))")
        )
    finally:
        await sandbox.aclose()
    assert result.killed_reason == "memory"
    assert result.stdout == ""


def test_pod_security_admission_accepts_our_pods_and_rejects_a_weakened_one(
    testcluster: Cluster, sandbox_namespace: str
) -> None:
    settings = PodSettings(namespace=sandbox_namespace)
    job = render_job("sbx-admission", ExecutionRequest(code="print(1)"), settings)
    pod = render_warm_pod("sbx-admission-warm", Limits(), settings)
    pod_of_job = {**pod, "metadata": {**pod["metadata"], "name": "sbx-admission-job-pod"}}
    pod_of_job["spec"] = job["spec"]["template"]["spec"]
    for manifest in (pod, pod_of_job):
        testcluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))
    weakened: dict[str, Any] = json.loads(json.dumps(pod))
    security = weakened["spec"]["containers"][0]["securityContext"]
    security["allowPrivilegeEscalation"] = True
    del security["capabilities"]
    refused = testcluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(weakened), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr
    assert "allowPrivilegeEscalation" in refused.stderr


async def test_backend_puts_a_deny_all_network_policy_in_its_namespace(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    await sandbox.start()
    await sandbox.aclose()
    policy = testcluster.kubectl_json(
        "get", "networkpolicy", "sandbox-deny-all", "-n", pod_settings.namespace
    )
    assert policy["spec"]["podSelector"] == {}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]


def test_finished_job_is_removed_by_the_ttl_controller(
    testcluster: Cluster, pod_settings: PodSettings
) -> None:
    # As if the gateway had died before deleting it: only ttlSecondsAfterFinished is left.
    settings = PodSettings(**{**pod_settings.__dict__, "ttl_seconds_after_finished": 1})
    name = f"sbx-ttl-{secrets.token_hex(3)}"
    testcluster.apply(json.dumps(render_job(name, ExecutionRequest(code="print(1)"), settings)))
    testcluster.wait_until(
        lambda: (
            testcluster.kubectl(
                "get", "job", name, "-n", settings.namespace, check=False
            ).returncode
            != 0
        ),
        f"the TTL controller to delete Job {name}",
        timeout=90,
    )
    _nothing_left(testcluster, settings)


async def test_auto_chooses_gvisor_where_the_cluster_has_it_and_else_the_default_runtime(
    kube_client: AsyncClient, real_node: RealNodeInfo, caplog: pytest.LogCaptureFixture
) -> None:
    assert "gvisor" in real_node.runtime_classes  # the real node installs it
    assert await choose_runtime_class(kube_client, RUNTIME_CLASS_AUTO) == "gvisor"
    absent = await choose_runtime_class(kube_client, RUNTIME_CLASS_AUTO, preferred="gvisor-absent")
    assert absent is None
    assert "no RuntimeClass 'gvisor-absent'" in caplog.text
    assert await choose_runtime_class(kube_client, None) is None  # asked for the default
    assert await choose_runtime_class(kube_client, "kata") == "kata"  # asked for a name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_gateway_process(
    testcluster: Cluster, settings: PodSettings, token_file: Path, port: int
) -> subprocess.Popen[bytes]:
    argv = [
        str(Path(sys.executable).parent / "agentkube"),
        "sandbox",
        "gateway",
        "--backend",
        "kubernetes",
        "--kubeconfig",
        str(testcluster.kubeconfig),
        "--auth",
        "static",
        "--token-file",
        str(token_file),
        "--port",
        str(port),
        "--namespace",
        settings.namespace,
        "--name",
        settings.gateway,
    ]
    for key, value in settings.node_selector.items():
        argv += ["--node-selector", f"{key}={value}"]
    for toleration in settings.tolerations:
        pair = toleration["key"] + (f"={toleration['value']}" if "value" in toleration else "")
        argv += ["--toleration", f"{pair}:{toleration['effect']}"]
    argv += ["--image", settings.image, "--runtime-class", settings.runtime_class_name or "none"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    testcluster.wait_until(
        lambda: process.poll() is not None or _healthy(port), "the gateway process to serve"
    )
    if process.poll() is not None:
        assert process.stderr is not None
        pytest.fail(f"the gateway exited: {process.stderr.read().decode()}")
    return process


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def test_gateway_restart_leaves_no_orphaned_jobs_or_pods(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("secret agent-a\n")
    port = _free_port()
    gateway = _start_gateway_process(testcluster, pod_settings, token_file, port)
    try:
        request = asyncio.create_task(
            asyncio.to_thread(
                httpx.post,
                f"http://127.0.0.1:{port}/v1/executions",
                json={"code": "import time; time.sleep(60)"},
                headers={"authorization": "Bearer secret"},
                timeout=120,
            )
        )
        selector = f"{GATEWAY_LABEL}={pod_settings.gateway}"

        def pod_running() -> bool:
            pods = testcluster.kubectl_json(
                "get", "pods", "-n", pod_settings.namespace, "-l", selector
            )["items"]
            return any((p.get("status") or {}).get("phase") == "Running" for p in pods)

        await asyncio.to_thread(testcluster.wait_until, pod_running, "the execution's pod to run")
    finally:
        gateway.kill()  # SIGKILL: none of the gateway's own clean-up runs
        gateway.wait()
        assert gateway.stderr is not None
        gateway.stderr.close()
    with pytest.raises(httpx.HTTPError):
        await request
    assert _left(testcluster, pod_settings)
    restarted = KubernetesSandbox(kube_client, pod_settings)
    await restarted.start()  # the new instance sweeps what the old one left
    await restarted.aclose()
    await asyncio.to_thread(_nothing_left, testcluster, pod_settings)


async def test_pod_watches_and_executions_carry_on_after_an_api_server_restart(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    # While the API server is down every reconnect is refused; the gateway's pod watch and the
    # real kubelet's must both come back (a watch that died would see no more pods).
    events = PodEvents(kube_client, namespace=pod_settings.namespace, gateway=pod_settings.gateway)
    seen: list[str] = []
    events.subscribe(lambda pod, deleted: seen.append(pod["metadata"]["name"]))
    events.start()
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    try:
        before = await sandbox.execute(ExecutionRequest(code="print('before')"))
        assert before.stdout == "before\n"
        assert seen, "the watch saw the first execution's pod"
        await asyncio.to_thread(testcluster.restart, "kube-apiserver", down_seconds=3)
        seen.clear()
        after = await sandbox.execute(ExecutionRequest(code="print('after')"))
        assert after.stdout == "after\n"
        await asyncio.to_thread(
            testcluster.wait_until, lambda: bool(seen), "the restarted watch to see a pod"
        )
    finally:
        await sandbox.aclose()
        await events.aclose()


async def test_output_beyond_the_termination_message_comes_back_whole_from_the_pod_log(
    testcluster: Cluster, kube_client: AsyncClient, pod_settings: PodSettings
) -> None:
    # A termination message holds 4 KiB; the runner's whole result is the log's last line, which
    # the gateway reads through the API server (pods/log -> the kubelet) before deleting the pod.
    sandbox = KubernetesSandbox(kube_client, pod_settings)
    code = "import sys\nprint('o' * 300_000)\nprint('e' * 5000, file=sys.stderr)"
    try:
        whole = await sandbox.execute(ExecutionRequest(code=code))
        capped = await sandbox.execute(
            ExecutionRequest(code=code, limits=Limits(output_bytes=100_000))
        )
    finally:
        await sandbox.aclose()
    assert (whole.stdout, whole.stderr) == ("o" * 300_000 + "\n", "e" * 5000 + "\n")
    assert not whole.truncated
    assert capped.stdout == "o" * 100_000 and capped.truncated  # the request's own cap holds
    await asyncio.to_thread(_nothing_left, testcluster, pod_settings)
