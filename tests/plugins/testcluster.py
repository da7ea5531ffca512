"""The `testcluster` fixture: a real Kubernetes control plane for the whole test session.

It starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok through the
same code as `hack/testcluster/testcluster up` (hack/testcluster/cluster.py), in a temporary
state directory on free loopback ports, and stops them when the session ends. Missing binaries
FAIL the test with the command that builds them (`make testcluster`); nothing skips.

    @pytest.mark.cluster
    def test_something(testcluster: Cluster, cluster_namespace: str) -> None:
        testcluster.kubectl("apply", "-n", cluster_namespace, "-f", "deploy/crds/")
        pod = testcluster.kubectl_json("get", "pod", "p", "-n", cluster_namespace)

Python clients (kopf, lightkube) take `testcluster.kubeconfig` (admin, credentials
embedded), or `testcluster.kubeconfig_for_service_account(ns, name)` to act with exactly the
rights RBAC gives that ServiceAccount. `testcluster.pools["gpu"].node_selector` and
`.tolerations` place a pod on a simulated pool (spot, gpu, sandbox).

When the host allows (root, cgroups, overlayfs, `make testcluster` built the node), the cluster
also has a real node (containerd with runc and gVisor, a kubelet, kube-router enforcing
NetworkPolicy): the `real_node` fixture gives its name, images, RuntimeClasses, node selector
and tolerations, and FAILS with the reason when the session has none. In CI the node is required
(AGENTKUBE_TESTCLUSTER_REAL_NODE=require): a host that cannot run it fails the session.

Set AGENTKUBE_TESTCLUSTER_ATTACH=1 to reuse a cluster started by `hack/testcluster/testcluster up`
(it is left running) instead of starting one: fast edit-test loops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hack.testcluster import binaries
from hack.testcluster.cli import DEFAULT_STATE_DIR
from hack.testcluster.cluster import TestCluster
from hack.testcluster.errors import TestClusterError
from hack.testcluster.kubeconfigs import write_kubeconfig
from hack.testcluster.nodes import POOLS, Pool
from hack.testcluster.realnode import Info as RealNodeInfo

T = TypeVar("T")
KUBECTL_HINT = (
    "install kubectl >= 1.30 (the `kubectl` package of pkgs.k8s.io; Debian's kubernetes-client "
    "is too old) and put it on PATH"
)


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """What a test gets from the `testcluster` fixture."""

    kubeconfig: Path  # admin (system:masters); hand it to kopf / lightkube / kubectl
    server: str  # https://127.0.0.1:<port>
    ca_cert: Path
    state_dir: Path  # logs/<component>.log are here
    pools: dict[str, Pool]
    kubectl_path: str
    real_node: RealNodeInfo | None  # None: see real_node_unavailable
    real_node_unavailable: str | None
    _control_plane: TestCluster = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, for subprocesses that read the default kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; on failure (if check) fail with its stderr."""
        argv = [self.kubectl_path, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`kubectl {' '.join(args)}` exited {result.returncode}:\n{result.stderr}",
                pytrace=False,
            )
        return result

    def kubectl_json(self, *args: str, **kwargs: Any) -> Any:
        """Run `kubectl ... -o json` and parse the output."""
        return json.loads(self.kubectl(*args, "-o", "json", **kwargs).stdout)

    def apply(
        self, manifest: str | Path, namespace: str | None = None, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` a YAML/JSON string or a file/directory path."""
        ns = ["-n", namespace] if namespace else []
        if isinstance(manifest, Path):
            return self.kubectl("apply", *ns, "-f", str(manifest), check=check)
        return self.kubectl("apply", *ns, "-f", "-", input=manifest, check=check)

    def restart(self, component: str, *, down_seconds: float = 0.0) -> None:
        """Restart one component (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
        kwok) with its flags, port and data unchanged; returns once it is ready again."""
        try:
            self._control_plane.restart(component, down_seconds=down_seconds)
        except TestClusterError as e:
            pytest.fail(f"test cluster: {e}", pytrace=False)

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, duration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig authenticating as system:serviceaccount:<namespace>:<name>.

        The ServiceAccount must exist; the token comes from the TokenRequest API.
        """
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration_seconds}s"
        ).stdout.strip()
        path = self.state_dir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{name}"
        return write_kubeconfig(
            path, self.server, self.ca_cert, None, None, user, token=token, namespace=namespace
        )

    def kubelet_serving_cert(self, node: str) -> tuple[Path, Path]:
        """(certificate, key) a stand-in kubelet of ``node`` serves with; the API server trusts
        it, as it trusts a real kubelet's."""
        pair = self._control_plane.kubelet_serving_cert(node)
        return pair.cert, pair.key

    def create_namespace(self, prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        """Create a uniquely named namespace (optionally labelled); return its name."""
        name = f"{_dns_label(prefix)[:40]}-{secrets.token_hex(3)}"
        manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace"}
        manifest["metadata"] = {"name": name, "labels": labels or {}}
        self.apply(json.dumps(manifest))
        self.wait_until(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            f"the default ServiceAccount in namespace {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    def wait_until(
        self, probe: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.5
    ) -> T:
        """Poll probe until it returns something truthy; fail naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
            time.sleep(every)


@pytest.fixture(scope="session")
def testcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running control plane with simulated nodes, shared by the session."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(f"the cluster tests need kubectl: {KUBECTL_HINT}.", pytrace=False)
    attach = os.environ.get("AGENTKUBE_TESTCLUSTER_ATTACH") == "1"
    if attach:
        state_dir = Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", DEFAULT_STATE_DIR))
    else:
        state_dir = tmp_path_factory.mktemp("testcluster")
    cluster = TestCluster(state_dir)
    try:
        if attach:
            cluster.attach()
        else:
            cluster.start(binaries.locate(), tie_to_parent=True)
            cluster.start_real_node()
    except TestClusterError as e:
        if not attach:
            cluster.stop()
        pytest.fail(f"test cluster: {e}", pytrace=False)
    try:
        yield handle(cluster, kubectl)
    finally:
        if not attach:
            cluster.stop()


@pytest.fixture(scope="module")
def fresh_testcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second control plane of its own (no real node) for the tests of one module: for
    installs that own cluster-wide objects the session's cluster shares (namespaces, RBAC,
    CRDs), and their uninstall. Costs a control-plane start (docs/benchmarks.md)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(f"the cluster tests need kubectl: {KUBECTL_HINT}.", pytrace=False)
    cluster = TestCluster(tmp_path_factory.mktemp("fresh-testcluster"))
    try:
        cluster.start(binaries.locate(), tie_to_parent=True)
    except TestClusterError as e:
        pytest.fail(f"test cluster: {e}", pytrace=False)
    try:
        yield handle(cluster, kubectl)
    finally:
        cluster.stop()


def handle(cluster: TestCluster, kubectl: str) -> Cluster:
    """What a test (or a benchmark) gets for a started or attached cluster."""
    return Cluster(
        kubeconfig=cluster.kubeconfig,
        server=cluster.server,
        ca_cert=cluster.ca_cert,
        state_dir=cluster.state_dir,
        pools=_pools(cluster.real_node),
        kubectl_path=kubectl,
        real_node=cluster.real_node,
        real_node_unavailable=cluster.real_node_unavailable,
        _control_plane=cluster,
    )


def _pools(real_node: RealNodeInfo | None) -> dict[str, Pool]:
    """The node pools; the real node, when there is one, is one of the sandbox pool's nodes
    (its extra taint keeps pods that tolerate only the pool's off it)."""
    pools = dict(POOLS)
    if real_node is not None:
        sandbox = pools["sandbox"]
        pools["sandbox"] = dataclasses.replace(sandbox, nodes=(*sandbox.nodes, real_node.name))
    return pools


@pytest.fixture
def real_node(testcluster: Cluster) -> RealNodeInfo:
    """The cluster's real node; the test FAILS (never skips) when the session has none."""
    if testcluster.real_node is None:
        pytest.fail(
            f"this test needs the test cluster's real node, and there is none: "
            f"{testcluster.real_node_unavailable}",
            pytrace=False,
        )
    return testcluster.real_node


@pytest.fixture
def cluster_namespace(testcluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    name = testcluster.create_namespace(request.node.name)
    yield name
    testcluster.delete_namespace(name)


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().removeprefix("test_")).strip("-") or "t"


@pytest.fixture(scope="session")
def agentkube_crds(testcluster: Cluster) -> list[str]:
    """agentkube's CRDs (deploy/crds/) applied and Established; returns their names."""
    crd_dir = Path(__file__).resolve().parents[2] / "deploy" / "crds"
    if not list(crd_dir.glob("*.yaml")):
        pytest.fail(f"no CRDs in {crd_dir}; generate them with `agentkube crds`.", pytrace=False)
    testcluster.apply(crd_dir)
    names = [
        item["metadata"]["name"]
        for item in testcluster.kubectl_json("get", "-f", str(crd_dir))["items"]
    ]
    for name in names:
        testcluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return names
