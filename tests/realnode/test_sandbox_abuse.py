"""The abuse suite inside real sandbox pods: hostile code run by the Kubernetes backend on the
real node, on gVisor (the gateway's default runtime where a cluster has it).

The same categories as tests/sandbox/test_abuse.py (the local backend), with the pod's own
boundaries: Pod Security `restricted`, a read-only root with an in-memory scratch volume, no
ServiceAccount token, the namespace's deny-all NetworkPolicy enforced by kube-router, the
kubelet's cgroup limits, and gVisor's user-space kernel. Each case asserts what the code could
not do and that the node and the gateway's next execution are unharmed.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hack.testcluster.nodeconfig import NODE_IP
from hack.testcluster.realnode import Info
from lightkube import AsyncClient, KubeConfig

from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.kubernetes import KubernetesSandbox
from tests.plugins.testcluster import Cluster
from tests.realnode.pods import real_node_settings

pytestmark = [pytest.mark.cluster, pytest.mark.sandbox]

MiB = 1024 * 1024
API_SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of cluster.SERVICE_CIDR
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="module")
def abuse_namespace(testcluster: Cluster) -> Iterator[str]:
    name = testcluster.create_namespace("abuse", labels=RESTRICTED)
    yield name
    testcluster.delete_namespace(name)


@pytest.fixture
async def sandbox(
    testcluster: Cluster, abuse_namespace: str, real_node: Info
) -> AsyncIterator[KubernetesSandbox]:
    client = AsyncClient(config=KubeConfig.from_file(testcluster.kubeconfig))
    backend = KubernetesSandbox(client, real_node_settings(real_node, abuse_namespace, "gvisor"))
    try:
        yield backend
        # The node survived: the next execution in the same namespace runs normally.
        after = await backend.execute(ExecutionRequest(code="print('still here')"))
        assert (after.exit_code, after.stdout) == (0, "still here\n"), after
    finally:
        await backend.aclose()
        await client.close()


async def run(sandbox: KubernetesSandbox, code: str, **limits: float) -> ExecutionResult:
    language = "bash" if limits.pop("bash", 0) else "python"
    return await sandbox.execute(
        ExecutionRequest(code=code, language=language, limits=Limits(**limits))
    )


def _last_json(stdout: str) -> dict[str, object]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))


async def test_memory_bomb_is_killed_for_memory(sandbox: KubernetesSandbox) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * MiB))\n".replace(
        "MiB", str(MiB)
    )
    result = await run(sandbox, code, timeout_s=30)
    assert result.killed_reason == "memory", result
    assert result.stdout == ""


async def test_cpu_spin_is_killed_at_the_timeout(sandbox: KubernetesSandbox) -> None:
    result = await run(sandbox, "while True:\n    pass\n", timeout_s=2)
    assert result.killed_reason == "timeout", result
    assert result.exit_code is None


async def test_fork_bomb_is_contained(sandbox: KubernetesSandbox) -> None:
    # The pod's limits stop it — its memory (each process costs some; under gVisor that is
    # what ends it) or its pids cgroup (the kubelet's podPidsLimit) — and the execution's
    # timeout at the latest; the fixture's next execution then runs on the same node.
    result = await run(sandbox, ":(){ :|:& };:\nsleep 30", bash=1, timeout_s=5)
    assert result.killed_reason in ("timeout", "memory", "pids"), result
    assert result.exit_code != 0


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_flood_is_capped(sandbox: KubernetesSandbox, stream: str) -> None:
    code = f"import sys\nline = 'x' * 65536\nwhile True:\n    sys.{stream}.write(line)\n"
    result = await run(sandbox, code, timeout_s=20)
    assert result.killed_reason == "output_limit", result.killed_reason
    assert result.truncated
    assert len(getattr(result, stream)) == Limits().output_bytes


async def test_filling_the_scratch_volume_stops_at_its_size(sandbox: KubernetesSandbox) -> None:
    # The scratch volume is in memory: its size limit, or the pod's memory limit it counts
    # against, stops the writer; either way nothing reaches the node's disk.
    code = textwrap.dedent(
        """
        import errno
        written = 0
        block = b'x' * (1024 * 1024)
        try:
            with open('fill', 'wb') as f:
                while True:
                    f.write(block)
                    f.flush()
                    written += len(block)
        except OSError as e:
            print(written, e.errno == errno.ENOSPC)
        """
    )
    result = await run(sandbox, code, timeout_s=30, memory_bytes=256 * MiB, scratch_bytes=64 * MiB)
    assert result.killed_reason in (None, "memory"), result
    if result.killed_reason is None:
        written, enospc = result.stdout.split()
        assert enospc == "True"
        assert int(written) <= 64 * MiB


async def test_the_node_and_its_servers_are_unreachable(sandbox: KubernetesSandbox) -> None:
    # A server on the node's own address, and the API server behind the `kubernetes` Service
    # (which any pod without a policy reaches): the deny-all NetworkPolicy (kube-router) drops
    # the pod's packets before they leave its network namespace.
    server = socket.socket()
    server.bind((NODE_IP, 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import socket
        for host, port in (({NODE_IP!r}, {port}), ({API_SERVICE_IP!r}, 443)):
            try:
                socket.create_connection((host, port), timeout=2)
                print('reached', host)
            except OSError as e:
                print('unreachable', host)
        try:
            socket.getaddrinfo('kubernetes.default.svc.cluster.local', 443)
            print('resolved')
        except OSError:
            print('no dns')
        """
    )
    try:
        result = await run(sandbox, code, timeout_s=20)
        assert result.exit_code == 0, result
        assert "reached" not in result.stdout
        assert result.stdout.count("unreachable") == 2
        assert result.stdout.splitlines()[-1] == "no dns"
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the node's listener
    finally:
        server.close()


async def test_no_credentials_host_files_or_host_environment_are_visible(
    sandbox: KubernetesSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKUBE_TEST_SECRET", "hunter2")  # the gateway's own environment
    paths = [
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/run/secrets",
        "/etc/kubernetes",
        "/var/lib/kubelet",
        "/work",
        "/root/.kube",
        str(Path.cwd()),
    ]
    code = textwrap.dedent(
        f"""
        import json, os
        print(json.dumps({{
            'seen': {{p: os.path.exists(p) for p in {paths!r}}},
            'env': dict(os.environ),
        }}))
        """
    )
    result = await run(sandbox, code)
    assert result.exit_code == 0, result
    report = _last_json(result.stdout)
    assert report["seen"] == dict.fromkeys(paths, False)
    env = report["env"]
    assert isinstance(env, dict)
    assert "AGENTKUBE_TEST_SECRET" not in env and "hunter2" not in result.stdout
    assert not [k for k in env if "TOKEN" in k or "PASSWORD" in k], env


async def test_nothing_outside_the_scratch_volume_reaches_a_disk(
    sandbox: KubernetesSandbox,
) -> None:
    # gVisor mounts a tmpfs of its own at /tmp (in the sandbox's memory, counted against the
    # pod's limit, gone with the pod); a file written there must not appear on the node.
    in_tmp = f"/tmp/agentkube-abuse-{secrets.token_hex(4)}"
    targets = ["/x", "/usr/x", "/usr/bin/python3", "/etc/passwd", "/dev/x",
               "/proc/sys/kernel/x", "/proc/sysrq-trigger"]  # fmt: skip
    code = textwrap.dedent(
        f"""
        import json
        results = {{}}
        for path in {targets!r}:
            try:
                with open(path, 'a') as f:
                    f.write('x')
                results[path] = 'written'
            except OSError as e:
                results[path] = type(e).__name__
        open('scratch-ok', 'w').write('fine')
        open({in_tmp!r}, 'w').write('in the sandbox only')
        print(json.dumps(results))
        """
    )
    result = await run(sandbox, code)
    assert result.exit_code == 0, result
    assert "written" not in _last_json(result.stdout).values()
    assert not Path(in_tmp).exists(), "a sandbox's /tmp file reached the node"


async def test_code_is_not_root_has_no_capabilities_and_cannot_gain_them(
    sandbox: KubernetesSandbox,
) -> None:
    code = textwrap.dedent(
        """
        import json, os
        status = dict(
            line.split(':', 1) for line in open('/proc/self/status').read().splitlines()
        )
        try:
            os.setuid(0)
            became = 'root'
        except PermissionError:
            became = 'refused'
        print(json.dumps({
            'uid': os.getuid(), 'euid': os.geteuid(),
            'cap_eff': status['CapEff'].strip(), 'cap_bnd': status['CapBnd'].strip(),
            'no_new_privs': status.get('NoNewPrivs', '').strip(), 'setuid': became,
        }))
        """
    )
    result = await run(sandbox, code)
    assert result.exit_code == 0, result
    report = _last_json(result.stdout)
    assert (report["uid"], report["euid"]) == (65532, 65532)
    assert int(str(report["cap_eff"]), 16) == 0
    assert int(str(report["cap_bnd"]), 16) == 0
    assert report["no_new_privs"] == "1"
    assert report["setuid"] == "refused"


async def test_node_processes_can_be_neither_seen_nor_killed(sandbox: KubernetesSandbox) -> None:
    victim = subprocess.Popen(["sleep", "120"])
    try:
        code = textwrap.dedent(
            f"""
            import json, os, signal
            pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
            try:
                os.kill({victim.pid}, signal.SIGKILL)
                outcome = 'killed'
            except ProcessLookupError:
                outcome = 'no such process'
            except PermissionError:
                outcome = 'not permitted'
            print(json.dumps({{'pids': pids, 'outcome': outcome}}))
            """
        )
        result = await run(sandbox, code)
        assert result.exit_code == 0, result
        report = _last_json(result.stdout)
        assert report["outcome"] in ("no such process", "not permitted")
        pids = report["pids"]
        assert isinstance(pids, list) and len(pids) <= 5, pids  # the pod's own, nothing else
        assert victim.poll() is None, "the node's process was killed"
    finally:
        victim.kill()
        victim.wait()


async def test_only_harmless_devices_exist(sandbox: KubernetesSandbox) -> None:
    code = "import os\nprint(sorted(os.listdir('/dev')))"
    result = await run(sandbox, code)
    assert result.exit_code == 0, result
    devices = set(json.loads(result.stdout.replace("'", '"')))
    harmless = {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd",
                "stdin", "stdout", "stderr", "core", "mqueue", "termination-log"}  # fmt: skip
    # gVisor's own devices, served by its user-space kernel (its FUSE and its netstack's tun),
    # never the node's.
    harmless |= {"fuse", "net", "char"}
    assert devices <= harmless, devices - harmless
    assert not devices & {"mem", "kmem", "port", "kmsg", "sda", "vda", "nvme0", "kvm"}
