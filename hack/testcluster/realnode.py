"""The real node: containerd (runc and gVisor), a kubelet and kube-router, joined to a cluster.

Started after the control plane, in this order: RBAC for the node's identities and the `gvisor`
RuntimeClass; the host snapshot (hostchanges: undone by `stop`); containerd, then the images
imported into it; the kubelet, which registers the node (labels and taints of the sandbox pool,
plus REAL_NODE_TAINT) and is Ready about a second later; the node's podCIDR; kube-router, which
enforces NetworkPolicy once its chains exist. Files live on a tmpfs mounted at
<state_dir>/realnode (or /run/agentkube-realnode when the state directory is too deep for the
node's unix sockets): removing the unpacked image from a busy disk took seconds, a tmpfs goes
with its unmount. Logs are in <state_dir>/logs/{containerd,kubelet,kube-router}.log (kept).

Only one real node can run per machine (the /32 on lo, /var/lib/kubelet/device-plugins, the
sysctls are machine-wide): a second start says which state directory holds the running one.
`host_problem` gives the one-line reason a host cannot run a node at all.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import addons, hostchanges, nodeconfig, pki, processes
from .api import Api, ApiError
from .binaries import NodeBinaries
from .errors import NotRunning, StartupFailed
from .kubeconfigs import write_kubeconfig
from .nodes import POOL_LABEL, POOLS, Taint

# Keeps pods that only tolerate the sandbox pool (written for kwok's simulated node and the
# stand-in kubelet) off the real node; a pod meant for it tolerates this too.
REAL_NODE_TAINT = Taint(key="agentkube.openvn/real-node", value="true")
LABELS = {**POOLS["sandbox"].labels, "agentkube.openvn/real-node": "true"}
TAINTS = (*POOLS["sandbox"].taints, REAL_NODE_TAINT)
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "kube-router")
WANT_ENV = "AGENTKUBE_TESTCLUSTER_REAL_NODE"  # auto (default), require, off
EVENTED_PLEG_ENV = "AGENTKUBE_TESTCLUSTER_EVENTED_PLEG"
KUBE_ROUTER_ROLE = "agentkube-testcluster:kube-router"


@dataclass(frozen=True, kw_only=True)
class Info:
    """What a client of the cluster needs to run pods on the real node."""

    name: str
    images: dict[str, str]  # python, pause -> image reference (imported, never pulled)
    runtime_classes: dict[str, str]  # RuntimeClass name -> handler; no class means runc
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    pod_cidr: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": self.images,
            "runtime_classes": self.runtime_classes,
            "node_selector": self.node_selector,
            "tolerations": self.tolerations,
            "pod_cidr": self.pod_cidr,
        }


def wanted() -> str:
    """`require` (fail if the host cannot), `auto` (start when it can) or `off`; CI requires."""
    value = os.environ.get(WANT_ENV, "").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value in ("1", "on", "yes", "true", "require"):
        return "require"
    if value in ("", "auto"):
        return "require" if os.environ.get("CI") else "auto"
    raise StartupFailed(f"{WANT_ENV}={value!r}: use auto, require or off.")


def host_problem() -> str | None:
    """Why this host cannot run the real node (one line), or None when it can."""
    if os.geteuid() != 0:
        return "it needs root (containerd, the kubelet and kube-router manage cgroups and iptables)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (containerd's snapshotter)"
    hierarchies = {p.name for p in hostchanges._hierarchies()}
    if not ({"memory", "cpu", "pids"} <= hierarchies or "cgroup" in hierarchies):
        return f"the memory, cpu and pids cgroups are not mounted under {hostchanges.CGROUP_FS}"
    tools = {
        nodeconfig.RUNC: "runc",
        f"{nodeconfig.CNI_BIN_DIR}/bridge": "containernetworking-plugins",
    }
    for path, package in tools.items():
        if not Path(path).is_file():
            return f"{path} is missing: run `make setup-dev` (it installs Debian's {package})"
    if list(Path("/etc/containerd/conf.d").glob("*.toml")):
        return "/etc/containerd/conf.d holds drop-ins, which every containerd imports"
    for tool in ("iptables", "ip6tables", "ipset", "ip", "conntrack"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: run `make setup-dev`"
    return None


def running_elsewhere(state_dir: Path) -> Path | None:
    """The state directory of a real node already running on this machine (not state_dir's)."""
    record = hostchanges.HostRecord.load()
    if record is None or Path(record.cluster_dir) == state_dir:
        return None
    node = RealNode(Path(record.cluster_dir))
    return node.state_dir if node.alive() else None


class RealNode:
    """The real node of the cluster rooted at state_dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.layout_root = nodeconfig.node_root(state_dir)
        self.state_file = state_dir / "realnode.json"
        self.timings: dict[str, float] = {}  # start-up step -> seconds, once `start` ran
        self._last_mark = time.monotonic()

    def info(self) -> Info | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return Info(**data["info"])

    def alive(self) -> bool:
        procs = self._processes()
        return bool(procs) and all(p.is_alive() for p in procs)

    def start(
        self,
        api: Api,
        server: str,
        binaries: NodeBinaries,
        *,
        tie_to_parent: bool,
        evented_pleg: bool,
        timeout: float = 120.0,
    ) -> Info:
        """Start the node and wait until it is Ready and NetworkPolicy is enforced."""
        elsewhere = running_elsewhere(self.state_dir)
        if elsewhere is not None:
            raise StartupFailed(
                f"a real node already runs on this machine, for the cluster in {elsewhere}; "
                f"only one fits per machine (`hack/testcluster/testcluster down --state-dir "
                f"{elsewhere}`)."
            )
        stale = hostchanges.HostRecord.load()
        if stale is not None:  # a killed session's leftovers: mounts, chains, cgroups
            hostchanges.undo(stale)
        deadline = time.monotonic() + timeout
        layout = nodeconfig.Layout(root=self.layout_root, bin_dir=binaries.bin_dir)
        _remove_tree(layout.root)
        info = Info(
            name=nodeconfig.NODE_NAME,
            images=binaries.images,
            runtime_classes=dict(nodeconfig.RUNTIME_CLASSES),
            node_selector={POOL_LABEL: "sandbox", "kubernetes.io/hostname": nodeconfig.NODE_NAME},
            tolerations=[t.toleration() for t in TAINTS],
            pod_cidr=nodeconfig.POD_CIDR,
        )
        self._save(info, [])
        self._last_mark = time.monotonic()
        try:
            self._create_api_objects(api, server, info)
            record = hostchanges.snapshot(
                cluster_dir=self.state_dir,
                state_dir=layout.root,
                bin_dir=binaries.bin_dir,
                node_ip=nodeconfig.NODE_IP,
                bridge=nodeconfig.BRIDGE,
                cgroup_root=nodeconfig.CGROUP_ROOT,
            )
            hostchanges.mount_tmpfs(record, nodeconfig.TMPFS_SIZE)
            self._write_files(layout, server, info, evented_pleg)
            hostchanges.add_node_ip(record)
            hostchanges.make_cgroup_root(record)
            self._mark("preparation")
            self._start_components(api, layout, binaries, info, tie_to_parent, deadline)
        except BaseException:
            self.stop()
            raise
        return info

    def stop(self) -> list[str]:
        """Stop the node's processes and undo its host changes; return the stopped names."""
        stopped = []
        for proc in self._processes():  # kubelet first: it would restart what we stop
            if proc.name in ("kubelet", "kube-proxy", "kube-router") and proc.is_alive():
                processes.stop(proc, timeout=5.0)
                stopped.append(proc.name)
        for proc in self._processes():
            if proc.is_alive():
                stopped.append(proc.name)
        record = hostchanges.HostRecord.load()
        if record is not None and Path(record.cluster_dir) == self.state_dir:
            problems = hostchanges.undo(record)  # kills containerd, shims and pods too
            if problems:
                raise StartupFailed("stopping the real node left: " + "; ".join(problems))
        for proc in self._processes():
            processes.stop(proc, timeout=1.0)  # reaps what undo killed
        _remove_tree(self.layout_root)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def import_image(self, archive: Path, *, timeout: float = 300.0) -> None:
        """Import a docker-archive (hack/image/build.sh's) into the running node's containerd, as
        `start` imports the python image: pods use it with imagePullPolicy Never."""
        _run_or_fail(
            [*self._running_ctr(), "-n", "k8s.io", "image", "import", str(archive)],
            "importing",
            timeout=timeout,
        )

    def tag_image(self, source: str, target: str) -> None:
        """Give an imported image another reference (e.g. the one deploy/ names), so pods that
        ask for `target` with imagePullPolicy IfNotPresent find it and never pull."""
        ctr = [*self._running_ctr(), "-n", "k8s.io", "image"]
        subprocess.run([*ctr, "rm", target], capture_output=True, timeout=30, check=False)
        _run_or_fail([*ctr, "tag", source, target], "tagging")

    def _running_ctr(self) -> list[str]:
        containerd = next((p for p in self._processes() if p.name == "containerd"), None)
        if containerd is None or not containerd.is_alive():
            raise NotRunning(
                f"no real node runs for the cluster in {self.state_dir}; "
                "start one with `hack/testcluster/testcluster up`."
            )
        bin_dir = Path(containerd.executable).parent  # the node's own build, ctr beside it
        return _ctr(bin_dir / "ctr", nodeconfig.Layout(root=self.layout_root, bin_dir=bin_dir))

    # -- start-up steps -------------------------------------------------------------------------

    def _create_api_objects(self, api: Api, server: str, info: Info) -> None:
        api_port = int(server.rsplit(":", 1)[1])
        objects: list[tuple[str, dict[str, Any]]] = [
            (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                addons.api_endpoint_slice(api_port),
            ),
            # No Node authorizer here: system:nodes gets the system:node role by RBAC.
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                _binding("agentkube-testcluster:nodes", "system:node", "Group", "system:nodes"),
            ),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                _binding(
                    "agentkube-testcluster:apiserver-kubelet",
                    "system:kubelet-api-admin",
                    "User",
                    "kube-apiserver-kubelet-client",
                ),
            ),
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", _kube_router_role()),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                _binding(KUBE_ROUTER_ROLE, KUBE_ROUTER_ROLE, "User", KUBE_ROUTER_ROLE),
            ),
        ]
        for name, handler in nodeconfig.RUNTIME_CLASSES.items():
            runtime_class = {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": name},
                "handler": handler,
            }
            objects.append(("/apis/node.k8s.io/v1/runtimeclasses", runtime_class))
        objects += addons.objects(info.images["coredns"], info.tolerations)
        for path, body in objects:
            _create(api, path, body)

    def _write_files(self, layout: nodeconfig.Layout, server: str, info: Info, pleg: bool) -> None:
        certs = self.state_dir / "pki"
        kubelet = pki.client(certs, "realnode-kubelet", f"system:node:{info.name}", "system:nodes")
        router = pki.client(certs, "realnode-kube-router", KUBE_ROUTER_ROLE)
        proxy = pki.client(certs, "realnode-kube-proxy", "system:kube-proxy")
        serving = pki.kubelet_serving(certs, info.name, nodeconfig.NODE_IP)
        ca = certs / "ca.crt"
        for identity, pair in (
            ("kubelet", kubelet),
            ("kube-router", router),
            ("kube-proxy", proxy),
        ):
            write_kubeconfig(layout.kubeconfig(identity), server, ca, pair.cert, pair.key, identity)
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(
            nodeconfig.containerd_config(layout, sandbox_image=info.images["pause"])
        )
        layout.runsc_config.write_text(nodeconfig.runsc_config(layout))
        nodeconfig.write_json(
            layout.cni_conf_dir / "10-agentkube.conflist", nodeconfig.cni_conflist(layout)
        )
        port, healthz, proxy_healthz, proxy_metrics = _free_ports(4)
        nodeconfig.write_json(
            layout.kube_proxy_config,
            nodeconfig.kube_proxy_config(
                layout, healthz_port=proxy_healthz, metrics_port=proxy_metrics
            ),
        )
        for i in range(addons.STATIC_VOLUMES):  # the static PVs' directories, any uid writes
            volume = layout.volumes_dir / f"pv-{i}"
            volume.mkdir(parents=True, exist_ok=True)
            volume.chmod(0o1777)
        config = nodeconfig.kubelet_config(
            layout,
            port=port,
            healthz_port=healthz,
            ca_cert=ca,
            serving_cert=serving.cert,
            serving_key=serving.key,
            taints=[t.to_json() for t in TAINTS],
            evented_pleg=pleg,
        )
        nodeconfig.write_json(layout.kubelet_config, config)

    def _start_components(
        self,
        api: Api,
        layout: nodeconfig.Layout,
        binaries: NodeBinaries,
        info: Info,
        tie: bool,
        deadline: float,
    ) -> None:
        ctr = _ctr(binaries.path("ctr"), layout)
        containerd = self._spawn(binaries, "containerd", nodeconfig.containerd_args(layout), tie)
        self._wait(
            "containerd's socket", deadline, containerd, lambda: _succeeds([*ctr, "version"])
        )
        self._mark("containerd")
        # The pause image first (the kubelet's pods need it); the python image, the bulk of the
        # import, goes on while the kubelet and kube-router start.
        pause, python_image = binaries.image_archive("pause"), binaries.image_archive("python")
        for archive in (pause, binaries.image_archive("coredns")):
            _run_or_fail([*ctr, "-n", "k8s.io", "image", "import", str(archive)], "importing")
        importing = subprocess.Popen(
            [*ctr, "-n", "k8s.io", "image", "import", str(python_image)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self._start_kubelet_and_router(api, layout, binaries, info, tie, deadline)
            _, err = importing.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if importing.poll() is None:
                importing.kill()
                importing.communicate()
        if importing.returncode != 0:
            raise StartupFailed(f"importing {python_image} into containerd failed: {err.strip()}")
        self._mark("python image (rest of its import)")

    def _start_kubelet_and_router(
        self,
        api: Api,
        layout: nodeconfig.Layout,
        binaries: NodeBinaries,
        info: Info,
        tie: bool,
        deadline: float,
    ) -> None:
        labels = nodeconfig.kubelet_args(layout, LABELS)
        kubelet = self._spawn(binaries, "kubelet", labels, tie)
        node_path = f"/api/v1/nodes/{info.name}"
        self._wait("the node to register", deadline, kubelet, lambda: _exists(api, node_path))
        api.patch_json(node_path, {"spec": {"podCIDR": info.pod_cidr, "podCIDRs": [info.pod_cidr]}})
        self._wait("the node to be Ready", deadline, kubelet, lambda: _node_ready(api, node_path))
        self._mark("kubelet")
        proxy = self._spawn(binaries, "kube-proxy", nodeconfig.kube_proxy_args(layout), tie)
        router = self._spawn(binaries, "kube-router", nodeconfig.kube_router_args(layout), tie)
        services = ["iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES"]
        self._wait("kube-proxy's chains", deadline, proxy, lambda: _succeeds(services))
        self._mark("kube-proxy")
        chain = ["iptables", "-w", "-t", "filter", "-S", "KUBE-ROUTER-FORWARD"]
        self._wait("kube-router's chains", deadline, router, lambda: _succeeds(chain))
        self._mark("kube-router")
        for path, body in addons.volumes(layout.volumes_dir):
            _create(api, path, body)
        dns = f"/apis/apps/v1/namespaces/{addons.KUBE_SYSTEM}/deployments/coredns"
        self._wait("CoreDNS to be ready", deadline, kubelet, lambda: _available(api, dns))
        self._mark("CoreDNS")

    def _mark(self, step: str) -> None:
        """Record how long the start-up step that just ended took (for `up` and benchmarks)."""
        now = time.monotonic()
        self.timings[step] = round(now - self._last_mark, 2)
        self._last_mark = now

    def _spawn(
        self, binaries: NodeBinaries, name: str, args: list[str], tie: bool
    ) -> processes.Started:
        proc = processes.spawn(
            name,
            [str(binaries.path(name)), *args],
            self.state_dir / "logs" / f"{name}.log",
            tie_to_parent=tie,
        )
        info = self.info()
        assert info is not None
        self._save(info, [*self._processes(), proc])
        return proc

    def _wait(
        self, what: str, deadline: float, proc: processes.Started, ready: Callable[[], bool]
    ) -> None:
        processes.wait_ready(what, deadline, proc, ready, every=0.1)

    def _processes(self) -> list[processes.Started]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return []
        return [processes.Started.from_json(p) for p in data["processes"]]

    def _save(self, info: Info, procs: list[processes.Started]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        data = {"info": info.to_json(), "processes": [p.to_json() for p in procs]}
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)


def _remove_tree(path: Path) -> None:
    """rm -rf, but never across a mount that is somehow still there (a bind mount of a host
    directory must not be emptied)."""
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, timeout=120)


def _binding(name: str, role: str, kind: str, subject: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    }


def _kube_router_role() -> dict[str, Any]:
    """What kube-router's firewall reads (and the node annotations it writes)."""
    read = ["get", "list", "watch"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": KUBE_ROUTER_ROLE},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "pods", "services", "endpoints"],
                "verbs": read,
            },
            {"apiGroups": [""], "resources": ["nodes"], "verbs": [*read, "patch", "update"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ],
    }


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _succeeds(argv: list[str]) -> bool:
    result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def _run_or_fail(argv: list[str], doing: str, *, timeout: float = 120.0) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise StartupFailed(f"{doing} `{' '.join(argv)}` failed: {result.stderr.strip()}")


def _create(api: Api, path: str, body: dict[str, Any]) -> None:
    try:
        api.post_json(path, body)
    except ApiError as e:
        if e.status != 409:  # already there (an earlier node in this cluster)
            raise


def _available(api: Api, path: str) -> bool:
    try:
        deployment = api.get_json(path)
    except (OSError, ApiError):
        return False
    return bool(deployment.get("status", {}).get("availableReplicas"))


def _exists(api: Api, path: str) -> bool:
    try:
        api.get(path)
    except (OSError, ApiError):
        return False
    return True


def _node_ready(api: Api, path: str) -> bool:
    try:
        node = api.get_json(path)
    except (OSError, ApiError):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _ctr(executable: Path, layout: nodeconfig.Layout) -> list[str]:
    """The node's `ctr`, talking to the node's own containerd."""
    return [str(executable), f"--address={layout.containerd_socket}"]
