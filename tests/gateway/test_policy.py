"""The sandbox policy: callers cannot raise it, the gateway publishes it, servers bound bodies."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkube.gateway.app import GatewaySettings, create_app
from agentkube.gateway.auth import Identity, StaticTokens
from agentkube.gateway.building import open_policy
from agentkube.gateway.errors import GatewayConfigError
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits, MiB
from agentkube.sandbox.policy import DEFAULT_POLICY, PolicyViolation, SandboxPolicy, load_policy
from tests.standins.serving import raw_request, response_status, serve

TOKENS = {"token-a": "system:serviceaccount:team-a:agent", "token-b": "system:serviceaccount:b:x"}


class RecordingSandbox:
    """A Sandbox that answers at once and remembers what it was asked to run."""

    def __init__(self) -> None:
        self.requests: list[ExecutionRequest] = []

    async def start(self) -> None:
        return None

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        self.requests.append(request)
        return ExecutionResult(exit_code=0, stdout="ok\n", duration_ms=1.0)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def gateway() -> Iterator[tuple[httpx.Client, RecordingSandbox]]:
    backend = RecordingSandbox()
    settings = GatewaySettings(
        policy=SandboxPolicy(max_cpu=1, max_memory_bytes=256 * MiB, max_input_file_bytes=1000),
        allowed_callers=("team-a/*",),
    )
    app = create_app(backend, StaticTokens(TOKENS), settings)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, backend


def _post(client: httpx.Client, body: dict[str, Any], token: str = "token-a") -> httpx.Response:
    return client.post("/v1/executions", json=body, headers={"authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"cpu": 64}, "limits.cpu: asked for 64, the sandbox policy allows at most 2"),
        ({"memory_bytes": 2**40}, "asked for 1099511627776 bytes (1.049e+06 MiB), the sandbox"),
        ({"timeout_s": 3600}, "limits.timeout_s: asked for 3600, the sandbox policy allows at"),
        ({"pids": 4096}, "limits.pids"),
        ({"output_bytes": 64 * MiB}, "limits.output_bytes"),
        ({"scratch_bytes": 2**30}, "limits.scratch_bytes"),
    ],
)
def test_a_request_above_the_policy_is_refused_naming_field_asked_and_maximum(
    limits: dict[str, float], named: str
) -> None:
    request = ExecutionRequest(code="print(1)", limits=Limits(**limits))
    with pytest.raises(PolicyViolation, match="publishes its policy at GET /v1/policy") as caught:
        DEFAULT_POLICY.check(request)
    assert named in str(caught.value)


def test_requests_within_the_policy_pass_unchanged() -> None:
    request = ExecutionRequest(code="print(1)", limits=Limits(cpu=2, memory_bytes=512 * MiB))
    assert DEFAULT_POLICY.check(request) is request
    assert DEFAULT_POLICY.check_limits(Limits()) == Limits()


def test_input_files_count_against_the_policy() -> None:
    policy = SandboxPolicy(max_input_file_bytes=10)
    with pytest.raises(PolicyViolation, match=r"files: asked for 15 bytes.*at most 10 bytes"):
        policy.check(ExecutionRequest(code="-", files={"a.txt": "0123456789"}))


def test_a_policy_file_takes_quantities_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("max_cpu: 1.5\nmax_memory_bytes: 1Gi\nmax_timeout_s: 60\n")
    policy = load_policy(good)
    assert (policy.max_cpu, policy.max_memory_bytes, policy.max_timeout_s) == (1.5, 2**30, 60)
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_cpu: 1\nmax_gpus: 3\n")
    with pytest.raises(GatewayConfigError, match=r"^--policy .*bad.yaml: max_gpus: unknown field"):
        open_policy(bad)
    with pytest.raises(GatewayConfigError, match="cannot read the sandbox policy"):
        open_policy(tmp_path / "missing.yaml")


def test_the_gateway_publishes_its_policy(gateway: tuple[httpx.Client, RecordingSandbox]) -> None:
    client, _ = gateway
    published = client.get("/v1/policy").json()
    assert published["max_cpu"] == 1
    assert published["max_memory_bytes"] == 256 * MiB
    assert SandboxPolicy.model_validate(published).max_input_file_bytes == 1000


def test_the_gateway_refuses_above_its_policy_and_never_runs_it(
    gateway: tuple[httpx.Client, RecordingSandbox],
) -> None:
    client, backend = gateway
    response = _post(client, {"code": "print(1)", "limits": {"cpu": 2}})
    assert response.status_code == 422
    assert (
        "limits.cpu: asked for 2, the sandbox policy allows at most 1" in response.json()["detail"]
    )
    assert backend.requests == []
    assert _post(client, {"code": "print(1)", "limits": {"cpu": 1}}).status_code == 200
    assert len(backend.requests) == 1


def test_only_allowed_callers_may_run(gateway: tuple[httpx.Client, RecordingSandbox]) -> None:
    client, backend = gateway
    refused = _post(client, {"code": "print(1)"}, token="token-b")
    assert refused.status_code == 403
    assert "system:serviceaccount:b:x may not run sandboxes" in refused.json()["detail"]
    assert backend.requests == []


def test_allow_list_patterns_match_namespace_and_service_account() -> None:
    settings = GatewaySettings(allowed_callers=("team-a/*", "ops/runner", "local-agent"))
    assert settings.allows(Identity(name="system:serviceaccount:team-a:anyone"))
    assert settings.allows(Identity(name="system:serviceaccount:ops:runner"))
    assert not settings.allows(Identity(name="system:serviceaccount:ops:other"))
    assert settings.allows(Identity(name="local-agent"))
    assert GatewaySettings().allows(Identity(name="whoever"))


async def test_the_kubernetes_backend_never_renders_above_its_policy() -> None:
    from agentkube.sandbox.kubernetes import KubernetesSandbox

    class NoClient:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the API client was used ({name}) for a refused request")

    client: Any = NoClient()
    sandbox = KubernetesSandbox(client, policy=SandboxPolicy(max_memory_bytes=64 * MiB))
    with pytest.raises(PolicyViolation, match=r"limits\.memory_bytes"):
        await sandbox.execute(ExecutionRequest(code="print(1)"))
    with pytest.raises(PolicyViolation, match=r"limits\.cpu"):
        KubernetesSandbox(client, warm_pool=1, warm_limits=Limits(cpu=4), policy=DEFAULT_POLICY)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_oversized_chunked_body_is_refused_while_it_streams() -> None:
    app = create_app(RecordingSandbox(), StaticTokens(TOKENS), GatewaySettings())
    with serve(app) as url:
        before = _peak_rss_mb()
        sock = raw_request(
            url,
            b"POST /v1/executions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer token-a\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        chunk = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
        sent = 0
        try:
            for _ in range(200):  # up to 200 MiB; the server stops reading at its 8 MiB cap
                sock.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        status = response_status(sock)
        sock.close()
        assert status == 413
        assert sent < 200  # the server closed the connection long before the end
        assert _peak_rss_mb() - before < 64  # nothing near 200 MiB was held


def test_a_declared_oversized_body_is_refused_before_it_is_read() -> None:
    app = create_app(RecordingSandbox(), StaticTokens(TOKENS), GatewaySettings())
    with serve(app) as url:
        sock = raw_request(
            url,
            b"POST /v1/executions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer token-a\r\n"
            b"content-length: 209715200\r\n\r\n",
        )
        assert response_status(sock) == 413
        sock.close()


def test_a_stalled_body_is_answered_and_the_connection_closed() -> None:
    settings = GatewaySettings(body_read_timeout_s=0.3)
    app = create_app(RecordingSandbox(), StaticTokens(TOKENS), settings)
    with serve(app) as url:
        sock = raw_request(
            url,
            b"POST /v1/executions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer token-a\r\n"
            b'content-length: 100\r\n\r\n{"code":',
        )
        started = time.monotonic()
        assert response_status(sock) == 408
        assert time.monotonic() - started < 10
        sock.settimeout(5)
        while sock.recv(4096):  # the server closes its side after answering
            pass
        sock.close()
