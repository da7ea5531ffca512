"""The gateway in front of the Kubernetes backend, with deploy/gateway's RBAC and real tokens.

The gateway runs with exactly the rights deploy/gateway/rbac.yaml gives its ServiceAccount (its
kubeconfig carries that ServiceAccount's token); agents authenticate with ServiceAccount tokens
minted for the gateway's audience and checked by TokenReview on the real API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from agentkube.api.pod_contract import SANDBOX_GATEWAY_AUDIENCE as GATEWAY_AUDIENCE
from agentkube.gateway.app import create_app
from agentkube.gateway.auth import CachingAuthenticator, TokenReviewAuthenticator
from agentkube.gateway.building import kube_client as gateway_client
from agentkube.gateway.client import RemoteSandbox
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult
from agentkube.sandbox.errors import SandboxRefused, SandboxUnavailable
from agentkube.sandbox.kubernetes import KubernetesSandbox
from agentkube.sandbox.kubernetes.pod_exec import ExecError, PodExec
from agentkube.sandbox.kubernetes.rendering import GATEWAY_LABEL, RUNTIME_CLASS_AUTO, PodSettings
from tests.plugins.testcluster import Cluster
from tests.standins.serving import serve

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "gateway"


def _gateway_objects(system_ns: str, sandbox_ns: str) -> list[dict]:
    """deploy/gateway rendered by kustomize, moved into the test's namespaces."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    text = rendered.replace("agentkube-sandbox-gateway-token-review", f"{system_ns}-review")
    text = text.replace("agentkube-sandbox-gateway-runtime-class", f"{system_ns}-runtime-class")
    text = text.replace("namespace: agentkube-system", f"namespace: {system_ns}")
    text = text.replace("namespace: agentkube-sandbox", f"namespace: {sandbox_ns}")
    return [o for o in yaml.safe_load_all(text) if o and o["kind"] != "Namespace"]


CLUSTER_WIDE = ("ClusterRole", "ClusterRoleBinding")


@contextlib.contextmanager
def _gateway(
    testcluster: Cluster, settings: PodSettings, *, without: str | None = None
) -> Iterator[str]:
    """A gateway on loopback with deploy/gateway's RBAC (less the objects whose name ends with
    ``without``), its Kubernetes backend using settings."""
    system_ns = testcluster.create_namespace("gw-system")
    objects = _gateway_objects(system_ns, settings.namespace)
    dropped = ("Deployment", "Service")
    rbac = [
        o
        for o in objects
        if o["kind"] not in dropped and not (without and o["metadata"]["name"].endswith(without))
    ]
    testcluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}))
    kubeconfig = testcluster.kubeconfig_for_service_account(system_ns, "agentkube-sandbox-gateway")
    client = gateway_client(kubeconfig)  # used only on the server's event loop
    app = create_app(
        KubernetesSandbox(client, settings),
        CachingAuthenticator(TokenReviewAuthenticator(client, audiences=(GATEWAY_AUDIENCE,))),
        kube_client=client,
    )
    try:
        with serve(app) as url:
            yield url
    finally:
        testcluster.delete_namespace(system_ns)
        for o in rbac:
            if o["kind"] in CLUSTER_WIDE:
                name = o["metadata"]["name"]
                testcluster.kubectl("delete", o["kind"].lower(), name, "--ignore-not-found")


@pytest.fixture
def pod_settings(gvisor_pod_settings: PodSettings) -> PodSettings:
    """Every gateway here runs its sandboxes on the real node on gVisor, its default there."""
    return gvisor_pod_settings


@pytest.fixture
def gateway_url(testcluster: Cluster, pod_settings: PodSettings) -> Iterator[str]:
    with _gateway(testcluster, pod_settings) as url:
        yield url


def _agent_token(testcluster: Cluster, audience: str | None) -> tuple[str, str]:
    namespace = testcluster.create_namespace("agents")
    name = f"agent-{secrets.token_hex(2)}"
    testcluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    extra = [f"--audience={audience}"] if audience else []
    token = testcluster.kubectl("create", "token", name, "-n", namespace, *extra).stdout.strip()
    return token, f"system:serviceaccount:{namespace}:{name}"


async def _execute_as_an_agent(
    testcluster: Cluster, url: str, request: ExecutionRequest
) -> tuple[ExecutionResult, str]:
    """Run request through the gateway at url as a new agent; the result and the agent's name."""
    token, identity = _agent_token(testcluster, GATEWAY_AUDIENCE)
    sandbox = RemoteSandbox(url, token=lambda: token)
    try:
        return await sandbox.execute(request), identity
    finally:
        await sandbox.aclose()


async def test_agent_with_a_gateway_audience_token_runs_code_and_is_logged_by_identity(
    testcluster: Cluster, gateway_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentkube.gateway")
    request = ExecutionRequest(code="print(sum(range(10)))")
    result, identity = await _execute_as_an_agent(testcluster, gateway_url, request)
    assert (result.exit_code, result.stdout) == (0, "45\n")
    logged = [r.getMessage() for r in caplog.records if r.name == "agentkube.gateway"]
    assert any(f" by {identity}: " in line for line in logged), logged


KERNEL = "print(open('/proc/version').read(), end='')"


async def test_by_default_the_gateway_runs_code_on_gvisor_where_the_cluster_has_it(
    testcluster: Cluster, pod_settings: PodSettings
) -> None:
    # The cluster has the RuntimeClass gvisor (the real node's): code sees gVisor's kernel, not
    # the node's. The same code on runc sees the node's own kernel.
    host_kernel = Path("/proc/version").read_text()
    auto = dataclasses.replace(pod_settings, runtime_class_name=RUNTIME_CLASS_AUTO)
    with _gateway(testcluster, auto) as url:
        on_default, _ = await _execute_as_an_agent(testcluster, url, ExecutionRequest(code=KERNEL))
    runc = dataclasses.replace(pod_settings, runtime_class_name=None)
    with _gateway(testcluster, runc) as url:
        on_runc, _ = await _execute_as_an_agent(testcluster, url, ExecutionRequest(code=KERNEL))
    assert on_default.exit_code == 0 and on_runc.exit_code == 0, (on_default, on_runc)
    assert on_runc.stdout == host_kernel
    assert on_default.stdout and on_default.stdout != host_kernel


async def test_a_gateway_that_may_not_read_the_runtime_class_refuses_to_guess(
    testcluster: Cluster, pod_settings: PodSettings
) -> None:
    # Without `get` on the RuntimeClass the gateway cannot tell whether gVisor is there: it
    # serves, but is not ready and runs nothing, naming the missing right.
    auto = dataclasses.replace(pod_settings, runtime_class_name=RUNTIME_CLASS_AUTO)
    refused = pytest.raises(SandboxUnavailable, match="grant get on runtimeclasses")
    with _gateway(testcluster, auto, without="-runtime-class") as url:
        health = httpx.get(f"{url}/healthz")
        with refused:
            await _execute_as_an_agent(testcluster, url, ExecutionRequest(code="print(1)"))
    assert health.status_code == 503
    assert "runtimeclasses" in health.json()["detail"]
    selector = f"{GATEWAY_LABEL}={auto.gateway}"
    assert not testcluster.kubectl_json("get", "jobs", "-n", auto.namespace, "-l", selector)[
        "items"
    ], "nothing ran on a runtime the gateway did not choose"


async def test_a_job_whose_pod_is_refused_fails_at_once_naming_the_reason(
    testcluster: Cluster, pod_settings: PodSettings
) -> None:
    # A gateway configured for a RuntimeClass the cluster lacks (gVisor not installed): the
    # API server refuses every pod. The caller hears why from the job controller's event, long
    # before the Job's deadline, and the Job does not stay behind.
    settings = dataclasses.replace(pod_settings, runtime_class_name="gvisor-not-installed")
    with _gateway(testcluster, settings) as url:
        request = ExecutionRequest(code="print(1)")
        started = time.monotonic()
        with pytest.raises(SandboxUnavailable, match='RuntimeClass "gvisor-not-installed"'):
            await _execute_as_an_agent(testcluster, url, request)
        assert time.monotonic() - started < request.limits.timeout_s  # not the deadline's doing
    selector = f"{GATEWAY_LABEL}={settings.gateway}"
    testcluster.wait_until(
        lambda: (
            not testcluster.kubectl_json("get", "jobs", "-n", settings.namespace, "-l", selector)[
                "items"
            ]
        ),
        "the refused Job to be deleted",
    )


async def test_large_output_comes_back_whole_with_the_gateway_s_own_rights(
    testcluster: Cluster, gateway_url: str
) -> None:
    # Reading the result from the pod log needs pods/log, which deploy/gateway/rbac.yaml grants.
    request = ExecutionRequest(code="print('z' * 50_000)")
    result, _ = await _execute_as_an_agent(testcluster, gateway_url, request)
    assert (result.stdout, result.truncated) == ("z" * 50_000 + "\n", False)


async def test_a_caller_that_goes_away_gets_its_job_deleted_before_the_deadline(
    testcluster: Cluster, gateway_url: str, pod_settings: PodSettings
) -> None:
    token, _ = _agent_token(testcluster, GATEWAY_AUDIENCE)
    selector = f"{GATEWAY_LABEL}={pod_settings.gateway}"

    def jobs() -> list[dict]:
        found = testcluster.kubectl_json(
            "get", "jobs", "-n", pod_settings.namespace, "-l", selector
        )
        return list(found["items"])

    async with httpx.AsyncClient(timeout=120) as client:
        call = asyncio.create_task(
            client.post(
                f"{gateway_url}/v1/executions",
                json={"code": "import time; time.sleep(60)"},
                headers={"authorization": f"Bearer {token}"},
            )
        )
        await asyncio.to_thread(testcluster.wait_until, jobs, "the execution's Job")
        call.cancel()  # the caller gives up: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await call
    # Long before the 60 s sleep or the Job's deadline.
    testcluster.wait_until(lambda: not jobs(), "the abandoned execution's Job to be deleted", 15)


async def test_token_for_the_api_server_audience_is_refused(
    testcluster: Cluster, gateway_url: str
) -> None:
    token, _ = _agent_token(testcluster, None)  # a token for the API server, not for us
    sandbox = RemoteSandbox(gateway_url, token=lambda: token)
    try:
        with pytest.raises(SandboxRefused):
            await sandbox.execute(ExecutionRequest(code="print(1)"))
    finally:
        await sandbox.aclose()
    response = httpx.post(f"{gateway_url}/v1/executions", json={"code": "print(1)"})
    assert response.status_code == 401


def test_agent_pod_fragment_for_gateway_auth_passes_pod_security_restricted(
    testcluster: Cluster, sandbox_namespace: str
) -> None:
    fragment = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "docs" / "gateway-auth.md")
        .read_text()
        .split("```yaml\n", 1)[1]
        .split("```", 1)[0]
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "agent-fragment", "namespace": sandbox_namespace},
        "spec": fragment["spec"],
    }
    testcluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod))


def test_gateway_deployment_pod_passes_pod_security_restricted(
    testcluster: Cluster, sandbox_namespace: str
) -> None:
    objects = _gateway_objects(sandbox_namespace, sandbox_namespace)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gateway-template", "namespace": sandbox_namespace},
        "spec": {**template["spec"], "serviceAccountName": "default"},
    }
    testcluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod))


@pytest.fixture
def gateway_rights(testcluster: Cluster, sandbox_namespace: str) -> Iterator[tuple[str, str]]:
    """The gateway's ServiceAccount and RBAC from deploy/gateway in a namespace of its own
    (returned first), and another namespace it has no rights in (second)."""
    system_ns = testcluster.create_namespace("gw-system")
    elsewhere = testcluster.create_namespace("elsewhere")
    objects = _gateway_objects(system_ns, sandbox_namespace)
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    testcluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}))
    yield system_ns, elsewhere
    testcluster.delete_namespace(system_ns)
    testcluster.delete_namespace(elsewhere)


def test_the_gateway_may_attach_and_exec_into_pods_of_the_sandbox_namespace_only(
    testcluster: Cluster, sandbox_namespace: str, gateway_rights: tuple[str, str]
) -> None:
    # Its warm pods' handover: get and create on pods/attach and pods/exec (a WebSocket session
    # needs both since Kubernetes 1.35), there and nowhere else; the rest of pods as it was.
    system_ns, elsewhere = gateway_rights
    gateway = f"system:serviceaccount:{system_ns}:agentkube-sandbox-gateway"

    def can(verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
        extra = [f"--subresource={subresource}"] if subresource else []
        answer = testcluster.kubectl(
            "auth", "can-i", verb, resource, *extra, "-n", namespace, f"--as={gateway}",
            check=False,
        )  # fmt: skip
        return answer.stdout.strip() == "yes"

    assert can("create", "pods", sandbox_namespace, "exec")
    assert can("create", "pods", sandbox_namespace)  # (as before: it runs Jobs and pods)
    assert can("get", "pods", sandbox_namespace, "exec")
    assert not can("create", "pods", elsewhere, "exec")
    assert not can("get", "pods", elsewhere, "exec")
    assert can("create", "pods", sandbox_namespace, "attach")
    assert can("get", "pods", sandbox_namespace, "attach")
    assert not can("create", "pods", elsewhere, "attach")
    assert not can("create", "pods", sandbox_namespace, "portforward")


async def test_the_exec_client_authenticates_as_the_gateway_and_rbac_decides(
    testcluster: Cluster, sandbox_namespace: str, gateway_rights: tuple[str, str]
) -> None:
    # The warm pods' exec client takes the gateway's own credentials (here its ServiceAccount's
    # token): the real API server lets it into the sandbox namespace (where a pod that does not
    # exist is a 404) and refuses it elsewhere (403, which makes the warm pool use annotations).
    system_ns, elsewhere = gateway_rights
    kubeconfig = testcluster.kubeconfig_for_service_account(system_ns, "agentkube-sandbox-gateway")
    client = gateway_client(kubeconfig)
    pod_exec = PodExec.of(client)
    errors = []
    try:
        for namespace in (sandbox_namespace, elsewhere):
            with pytest.raises(ExecError) as failed:
                await pod_exec.run(
                    namespace, "no-such-pod", "sandbox", ["true"], b"", max_stdout=10,
                    time_limit_s=30,
                )  # fmt: skip
            errors.append(failed.value)
    finally:
        await pod_exec.aclose()
        await client.close()
    assert [e.status_code for e in errors] == [404, 403], errors
    assert [e.forbidden for e in errors] == [False, True]


async def test_the_exec_client_authenticates_with_a_client_certificate_too(
    testcluster: Cluster, sandbox_namespace: str
) -> None:
    # The admin kubeconfig's client certificate (as a gateway run outside the cluster has):
    # authenticated and authorized, the API server looks for the pod (404), no 401 or 403.
    client = gateway_client(testcluster.kubeconfig)
    pod_exec = PodExec.of(client)
    try:
        with pytest.raises(ExecError) as failed:
            await pod_exec.run(
                sandbox_namespace, "no-such-pod", "sandbox", ["true"], b"", max_stdout=10,
                time_limit_s=30,
            )  # fmt: skip
    finally:
        await pod_exec.aclose()
        await client.close()
    assert failed.value.status_code == 404, failed.value
