"""NetworkPolicy on the real node is enforced (kube-router): deny-all holds, an allow lets in.

kube-router applies a policy, and a new pod's own chains, a moment after the API server has
them, so each probe retries until the expected answer and then checks that it holds. The pod put
under deny-all (on gVisor, as sandbox pods run) first shows it can reach the server, so that
being cut off afterwards is the policy's doing.
"""

from __future__ import annotations

import functools
import json
import subprocess
from typing import Any

import pytest
from hack.testcluster.realnode import Info

from tests.plugins.testcluster import Cluster
from tests.realnode.pods import create_pod, pod_spec, python, running_pod

pytestmark = pytest.mark.cluster

PORT = 8080
SERVER = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('', {PORT}))\n"
    "s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall(b'pong')\n"
    "    c.close()\n"
)
SLEEP = "import time; time.sleep(3600)"


def _policy(name: str, spec: dict[str, Any]) -> str:
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    return json.dumps(manifest)


def _reaches(cluster: Cluster, namespace: str, client: str, ip: str) -> bool:
    """Whether client's TCP connection to the server gets the server's answer within 2 s."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    s = socket.create_connection(('{ip}', {PORT}), timeout=2)\n"
        "    sys.exit(0 if s.recv(4) == b'pong' else 1)\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    try:
        result = cluster.kubectl(
            "exec", client, "-n", namespace, "--", *python(probe), check=False, timeout=30
        )
    except subprocess.TimeoutExpired:
        return False
    if result.returncode not in (0, 1):
        pytest.fail(f"kubectl exec into {client} failed: {result.stderr}", pytrace=False)
    return result.returncode == 0


def _cut_off(cluster: Cluster, namespace: str, client: str, ip: str) -> bool:
    return not _reaches(cluster, namespace, client, ip)


def test_a_pod_under_deny_all_cannot_reach_a_server_an_allowed_client_reaches(
    testcluster: Cluster, cluster_namespace: str, real_node: Info
) -> None:
    ns = cluster_namespace
    # The server admits only role=client pods.
    allow = {
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": [{"protocol": "TCP", "port": PORT}],
            }
        ],
    }
    testcluster.apply(_policy("server-allows-clients", allow), namespace=ns)
    create_pod(testcluster, ns, "server", pod_spec(real_node, python(SERVER)), {"app": "server"})
    clients = {
        "client": {"role": "client"},  # allowed by the server's policy
        "outsider": {"role": "outsider"},  # not allowed by it
        "sandbox": {"role": "client", "sandbox": "true"},  # allowed there; deny-all comes later
    }
    for name, labels in clients.items():
        spec = pod_spec(real_node, python(SLEEP), runtime="gvisor" if name == "sandbox" else "runc")
        create_pod(testcluster, ns, name, spec, labels)
    ip = running_pod(testcluster, ns, "server")["status"]["podIP"]
    for name in clients:
        running_pod(testcluster, ns, name)

    for allowed in ("client", "sandbox"):
        testcluster.wait_until(
            functools.partial(_reaches, testcluster, ns, allowed, ip),
            f"{allowed} to reach the server it is allowed to",
        )
    deny_all = {"podSelector": {"matchLabels": {"sandbox": "true"}}, "policyTypes": ["Egress"]}
    testcluster.apply(_policy("sandbox-deny-all", deny_all), namespace=ns)

    for denied in ("outsider", "sandbox"):
        testcluster.wait_until(
            functools.partial(_cut_off, testcluster, ns, denied, ip),
            f"{denied} to be cut off from the server",
        )
        assert not any(_reaches(testcluster, ns, denied, ip) for _ in range(3))
    assert _reaches(testcluster, ns, "client", ip)
