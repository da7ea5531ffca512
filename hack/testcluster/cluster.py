"""Start, check and stop one test cluster whose every file lives in a state directory.

    state_dir/
      state.json        ports and the identity of every process started (what `down` stops)
      kubeconfig        admin kubeconfig (certificates embedded: usable by kubectl, kopf, clients)
      pki/  etcd/  kubeconfigs/  logs/<component>.log

Start-up order is the one Kubernetes needs: etcd, API server, then controller manager, scheduler
and kwok; then the simulated nodes are created and we wait until they are Ready and the default
ServiceAccount exists (the sign that the controller manager works). If anything fails, every
process already started is stopped before the error (with the component's log tail) is raised.
`start_real_node` then joins the real node (realnode.py) when it is wanted and the host allows;
`stop` stops it first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import binaries as binaries_module
from . import nodes, pki, processes, realnode
from .api import Api, ApiError, probe
from .binaries import Binaries
from .errors import MissingPrerequisite, NotRunning, StartupFailed
from .kubeconfigs import write_kubeconfig

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
API_PORT = 6443
ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 (the API server, for the real node's pods; see _apiserver_args)
PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")


@dataclass(frozen=True, kw_only=True)
class State:
    """What state.json records about a started cluster."""

    ports: dict[str, int]
    processes: list[processes.Started]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def to_json(self) -> dict[str, Any]:
        return {"ports": self.ports, "processes": [p.to_json() for p in self.processes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        procs = [processes.Started.from_json(p) for p in data["processes"]]
        return cls(ports=dict(data["ports"]), processes=procs)


class TestCluster:
    """One cluster rooted at state_dir. `start` it, or `attach` to one an earlier `up` started."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.real_node_timings: dict[str, float] = {}  # start-up step -> s, of the last start
        self._state: State | None = None
        self._tie_to_parent = False

    # -- paths a caller needs -------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (system:masters), credentials embedded."""
        return self.state_dir / "kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def kubelet_serving_cert(self, node: str) -> pki.KeyPair:
        """A serving certificate for ``node``'s kubelet on loopback that the API server trusts."""
        return pki.kubelet_serving(self.state_dir / "pki", node)

    @property
    def server(self) -> str:
        return self._require_state().server

    def admin_api(self) -> Api:
        return Api(
            server=self.server,
            ca_cert=self.ca_cert,
            client_cert=self.state_dir / "pki" / "admin.crt",
            client_key=self.state_dir / "pki" / "admin.key",
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(
        self, binaries: Binaries, *, timeout: float = 180.0, tie_to_parent: bool = False
    ) -> None:
        """Start every component, create the nodes, wait until usable. Stops all on failure.

        tie_to_parent: components die with the calling process (for test sessions).
        """
        if self.state_file.exists():
            raise StartupFailed(
                f"{self.state_dir} already holds a cluster; stop it first "
                f"(`hack/testcluster/testcluster down --state-dir {self.state_dir}`)."
            )
        for sub in ("pki", "etcd", "kubeconfigs"):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        deadline = time.monotonic() + timeout
        certs = pki.generate(self.state_dir / "pki")
        self._state = State(ports=_ports(), processes=[])
        self._tie_to_parent = tie_to_parent
        self._write_kubeconfigs(certs)
        try:
            self._start_components(binaries, certs, deadline)
            self._create_nodes()
            self._wait_usable(deadline)
        except BaseException:
            self.stop()
            raise

    def attach(self) -> None:
        """Use the cluster an earlier `start` (another process) left running here."""
        if not self.state_file.exists():
            raise NotRunning(
                f"no test cluster in {self.state_dir}; "
                "start one with `hack/testcluster/testcluster up`."
            )
        self._state = State.from_json(json.loads(self.state_file.read_text()))
        dead = [p.name for p in self._state.processes if not p.is_alive()]
        node = realnode.RealNode(self.state_dir)
        if node.info() is not None and not node.alive():
            dead.append("the real node")
        if dead:
            raise NotRunning(
                f"the test cluster in {self.state_dir} is broken ({', '.join(dead)} not running); "
                f"run `hack/testcluster/testcluster down` then `up`."
            )

    def start_real_node(self, *, evented_pleg: bool | None = None) -> realnode.Info | None:
        """Join the real node if wanted (realnode.wanted()) and the host allows it.

        Returns its Info, or None with the reason in `real_node_unavailable`; raises
        MissingPrerequisite when the node is required (CI) but the host cannot run it, and
        StartupFailed when it is required and fails to start. A node
        already running for another cluster on this machine is never an error: one fits per
        machine, and that cluster's tests have it.
        """
        self._require_state()
        self._unavailable_file.unlink(missing_ok=True)
        want = realnode.wanted()
        reason = "it is switched off" if want == "off" else realnode.host_problem()
        node_binaries = None
        if reason is None:
            try:
                node_binaries = binaries_module.locate_node()
            except MissingPrerequisite as e:
                reason = str(e)
        if reason is not None and want == "require":
            raise MissingPrerequisite(f"no real node: {reason} ({realnode.WANT_ENV}={want})")
        elsewhere = realnode.running_elsewhere(self.state_dir) if reason is None else None
        if elsewhere is not None:
            reason = f"one already runs on this machine (for the cluster in {elsewhere})"
        if reason is not None or node_binaries is None:
            self._unavailable_file.write_text(
                f"no real node: {reason} ({realnode.WANT_ENV}={want})\n"
            )
            return None
        if evented_pleg is None:
            evented_pleg = os.environ.get(realnode.EVENTED_PLEG_ENV, "1") != "0"
        node = realnode.RealNode(self.state_dir)
        self.real_node_timings = node.timings
        try:
            return node.start(
                self.admin_api(),
                self.server,
                node_binaries,
                tie_to_parent=self._tie_to_parent,
                evented_pleg=evented_pleg,
            )
        except StartupFailed as e:
            if want == "require":
                raise
            # The control plane is fine: its tests run, the real node's fail with this.
            self._unavailable_file.write_text(f"no real node: it failed to start: {e}\n")
            return None

    def stop_real_node(self) -> list[str]:
        """Stop the real node alone (the control plane keeps running)."""
        self._unavailable_file.unlink(missing_ok=True)
        return realnode.RealNode(self.state_dir).stop()

    @property
    def real_node(self) -> realnode.Info | None:
        """The running real node, if this cluster has one."""
        return realnode.RealNode(self.state_dir).info()

    @property
    def real_node_unavailable(self) -> str | None:
        """Why this cluster has no real node (one line), if it has none."""
        try:
            return self._unavailable_file.read_text().strip()
        except OSError:
            return None

    @property
    def _unavailable_file(self) -> Path:
        return self.state_dir / "realnode-unavailable"

    def stop(self) -> list[str]:
        """Stop the processes this cluster started (nothing else); return their names."""
        stopped = realnode.RealNode(self.state_dir).stop()
        self._unavailable_file.unlink(missing_ok=True)
        state = self._state
        if state is None and self.state_file.exists():
            state = State.from_json(json.loads(self.state_file.read_text()))
        if state is None:
            return stopped
        by_name = {p.name: p for p in state.processes}
        for name in STOP_ORDER:
            proc = by_name.get(name)
            if proc is not None and proc.is_alive():
                processes.stop(proc)
                stopped.append(name)
        for sub in ("etcd", "pki", "kubeconfigs"):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        self._state = None
        return stopped  # logs/ stays, for a post-mortem

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 90.0) -> None:
        """Stop one component and start it again as it was (same flags, port, data, log).

        For tests of what clients do while, say, the API server is away. The new process
        replaces the old one in state.json, so `stop`/`down` still stop everything.
        """
        state = self._require_state()
        old = self._process(name)
        if not old.argv:
            raise StartupFailed(
                f"{name} was recorded without its command line (started by an older version); "
                "restart the whole cluster with `down` and `up`."
            )
        # With clients still watching, kube-apiserver drains for a long time after SIGTERM;
        # a restart need not wait for that: 5 s of grace, then SIGKILL.
        processes.stop(old, timeout=5.0)
        time.sleep(down_seconds)
        new = processes.spawn(
            name, list(old.argv), Path(old.log), tie_to_parent=self._tie_to_parent, append=True
        )
        state.processes[state.processes.index(old)] = new
        self._save()
        self._wait(f"restarted {name}", time.monotonic() + timeout, new, self._ready_check(name))

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    # -- start-up steps -------------------------------------------------------------------------

    def _start_components(self, binaries: Binaries, certs: pki.Pki, deadline: float) -> None:
        etcd = self._spawn(binaries, "etcd", self._etcd_args())
        self._wait("etcd /health", deadline, etcd, self._ready_check("etcd"))
        apiserver = self._spawn(binaries, "kube-apiserver", self._apiserver_args(certs))
        self._wait(
            "kube-apiserver /readyz", deadline, apiserver, self._ready_check("kube-apiserver")
        )
        kcm = self._spawn(binaries, "kube-controller-manager", self._controller_manager_args(certs))
        sched = self._spawn(binaries, "kube-scheduler", self._scheduler_args())
        self._spawn(binaries, "kwok", self._kwok_args(binaries))
        for proc in (kcm, sched):
            self._wait(f"{proc.name} /healthz", deadline, proc, self._ready_check(proc.name))

    def _ready_check(self, name: str) -> Callable[[], bool]:
        ports = self._require_state().ports
        checks: dict[str, Callable[[], bool]] = {
            "etcd": lambda: probe(f"http://127.0.0.1:{ports['etcd_client']}/health"),
            "kube-apiserver": self._apiserver_ready,
            "kube-controller-manager": lambda: probe(
                f"https://127.0.0.1:{ports['controller_manager']}/healthz"
            ),
            "kube-scheduler": lambda: probe(f"https://127.0.0.1:{ports['scheduler']}/healthz"),
            "kwok": lambda: True,  # kwok serves no health port here; alive is all we can see
        }
        return checks[name]

    def _create_nodes(self) -> None:
        api = self.admin_api()
        for node in nodes.node_manifests():
            api.post_json("/api/v1/nodes", node)

    def _wait_usable(self, deadline: float) -> None:
        api = self.admin_api()
        names = [n["metadata"]["name"] for n in nodes.node_manifests()]
        kwok = self._process("kwok")
        self._wait(
            f"simulated nodes {', '.join(names)} Ready",
            deadline,
            kwok,
            lambda: all(_node_ready(api, n) for n in names),
        )
        kcm = self._process("kube-controller-manager")
        default_sa = "/api/v1/namespaces/default/serviceaccounts/default"
        self._wait("the default ServiceAccount", deadline, kcm, lambda: _exists(api, default_sa))

    def _spawn(self, binaries: Binaries, name: str, args: list[str]) -> processes.Started:
        state = self._require_state()
        proc = processes.spawn(
            name,
            [str(binaries.path(name)), *args],
            self.state_dir / "logs" / f"{name}.log",
            tie_to_parent=self._tie_to_parent,
        )
        state.processes.append(proc)
        self._save()
        return proc

    def _wait(
        self, what: str, deadline: float, proc: processes.Started, ready: Callable[[], bool]
    ) -> None:
        processes.wait_ready(what, deadline, proc, ready, every=0.25)

    def _apiserver_ready(self) -> bool:
        try:
            return self.admin_api().get("/readyz", timeout=2.0).strip() == "ok"
        except (OSError, ApiError):
            return False

    # -- component flags ------------------------------------------------------------------------

    def _etcd_args(self) -> list[str]:
        p = self._require_state().ports
        client, peer = f"http://127.0.0.1:{p['etcd_client']}", f"http://127.0.0.1:{p['etcd_peer']}"
        return [
            "--name=testcluster",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testcluster={peer}",
            "--unsafe-no-fsync=true",  # a throw-away store: durability only costs test time
            "--log-level=warn",
        ]

    def _apiserver_args(self, certs: pki.Pki) -> list[str]:
        p = self._require_state().ports
        return [
            f"--etcd-servers=http://127.0.0.1:{p['etcd_client']}",
            # Pods on the real node reach the API server at the node's IP (a /32 on lo the node
            # adds later), through the `kubernetes` Service kube-proxy routes: the real node
            # writes that Service's EndpointSlice (realnode.py), as the endpoint reconciler
            # would if the address existed now. Without a real node, loopback only.
            f"--bind-address={ALL_ADDRESSES if _real_node_expected() else '127.0.0.1'}",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={certs.serving.cert}",
            f"--tls-private-key-file={certs.serving.key}",
            f"--client-ca-file={certs.ca_cert}",
            # Kubelet endpoints (pods/log) must show a certificate from the same CA; a real
            # kubelet in turn authenticates the API server by its client certificate. Kubelets
            # are reached at their InternalIP, which needs no name resolution on the host.
            f"--kubelet-certificate-authority={certs.ca_cert}",
            f"--kubelet-client-certificate={certs.clients['kube-apiserver-kubelet-client'].cert}",
            f"--kubelet-client-key={certs.clients['kube-apiserver-kubelet-client'].key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalIP",
            f"--service-account-key-file={certs.sa_pub}",
            f"--service-account-signing-key-file={certs.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=PodSecurity",
            "--allow-privileged=true",  # so that refusing privileged pods is PodSecurity's doing
            "--profiling=false",
        ]

    def _controller_manager_args(self, certs: pki.Pki) -> list[str]:
        p = self._require_state().ports
        kubeconfig = self._kubeconfig_path("kube-controller-manager")
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['controller_manager']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={certs.sa_key}",
            f"--root-ca-file={certs.ca_cert}",
            f"--cluster-signing-cert-file={certs.ca_cert}",
            f"--cluster-signing-key-file={certs.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ]

    def _scheduler_args(self) -> list[str]:
        p = self._require_state().ports
        kubeconfig = self._kubeconfig_path("kube-scheduler")
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['scheduler']}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kwok_args(self, binaries: Binaries) -> list[str]:
        annotation = ",".join(f"{k}={v}" for k, v in nodes.KWOK_ANNOTATION.items())
        return [
            f"--kubeconfig={self._kubeconfig_path('kwok')}",
            f"--config={binaries.kwok_stages}",
            f"--manage-nodes-with-annotation-selector={annotation}",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
        ]

    # -- kubeconfigs ----------------------------------------------------------------------------

    def _kubeconfig_path(self, identity: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{identity}.kubeconfig"

    def _write_kubeconfigs(self, certs: pki.Pki) -> None:
        for identity, pair in certs.clients.items():
            path = self._kubeconfig_path(identity)
            write_kubeconfig(path, self.server, certs.ca_cert, pair.cert, pair.key, identity)
        shutil.copyfile(self._kubeconfig_path("admin"), self.kubeconfig)
        self.kubeconfig.chmod(0o600)

    # -- small helpers --------------------------------------------------------------------------

    def _require_state(self) -> State:
        if self._state is None:
            raise NotRunning(f"the test cluster in {self.state_dir} is not started.")
        return self._state

    def _process(self, name: str) -> processes.Started:
        return next(p for p in self._require_state().processes if p.name == name)

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._require_state().to_json(), indent=2))
        tmp.replace(self.state_file)


def _real_node_expected() -> bool:
    try:
        return realnode.wanted() != "off" and realnode.host_problem() is None
    except StartupFailed:
        return False


def _ports() -> dict[str, int]:
    """The cluster's ports. A cluster that will have the real node serves its API on 6443 when
    that is free, as clusters do: NetworkPolicies that admit the API server by port (the
    operator's, the gateway's: 443 and 6443) then admit it after kube-proxy's DNAT too."""
    ports = _free_ports(PORT_NAMES)
    if _real_node_expected() and API_PORT not in ports.values() and _port_free(API_PORT):
        ports["apiserver"] = API_PORT
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((ALL_ADDRESSES, port))
        except OSError:
            return False
    return True


def _free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Distinct free loopback ports (all held open together so none is handed out twice)."""
    socks = []
    try:
        for _ in names:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return {name: s.getsockname()[1] for name, s in zip(names, socks, strict=True)}
    finally:
        for s in socks:
            s.close()


def _node_ready(api: Api, name: str) -> bool:
    try:
        node = api.get_json(f"/api/v1/nodes/{name}")
    except (OSError, ApiError):
        return False
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )
    not_ready_taint = any(
        t.get("key") == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints", [])
    )
    return ready and not not_ready_taint


def _exists(api: Api, path: str) -> bool:
    try:
        api.get(path)
    except (OSError, ApiError):
        return False
    return True
