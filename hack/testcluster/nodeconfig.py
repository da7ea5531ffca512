"""The real node's configuration files and command lines, as pure functions of its layout.

Every path a component would otherwise default to a host location (/var/lib/containerd,
/run/containerd, /var/lib/kubelet, /etc/cni, /opt/containerd, ...) is pointed into the node's
directory under the cluster's state directory; the few the components hard-code are listed in
hostchanges.HARD_CODED_DIRS and removed by `down`. Why each unusual setting is there:

- containerd `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, so nothing may lower
  an oom_score_adj below containerd's own (the gVisor shim is patched for the same reason).
- runsc `platform = "systrap"`: `kvm` hangs in this VM without an error.
- kubelet `failCgroupV1: false`: the machine has hybrid cgroup v1, which kubelet 1.37 refuses
  unless told; `cgroupRoot` keeps every pod cgroup under one directory `down` removes.
- kubelet webhook authentication and authorization: the API server calls it with its client
  certificate (bound to system:kubelet-api-admin), anonymous requests are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "real-sandbox-0"
NODE_IP = "10.249.255.1"  # a /32 on lo: the kubelet refuses a loopback node IP
POD_CIDR = "10.250.0.0/24"  # apart from kwok's simulated pod IPs (cluster.POD_CIDR)
BRIDGE = "akrealnode0"
DNS_SERVICE_IP = "10.96.0.10"  # the `kube-dns` Service (cluster.SERVICE_CIDR), CoreDNS behind it
CGROUP_ROOT = "agentkube-realnode"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
RUNC = "/usr/sbin/runc"  # Debian's runc
RUNTIME_CLASSES = {"gvisor": "runsc"}  # RuntimeClass name -> containerd runtime handler
# Unix socket paths hold at most 108 bytes (Go refuses more than 104), and the node puts sockets
# up to 50 bytes deep (kubelet/pod-resources/<n>, containerd.sock.ttrpc): a state directory
# deeper than MAX_ROOT keeps the node's files in SHORT_ROOT instead (one node per machine).
MAX_ROOT = 56
# The node's files (image snapshots, containers' writable layers, emptyDirs) live in memory.
TMPFS_SIZE = "4g"
SHORT_ROOT = Path("/run/agentkube-realnode")  # hostchanges.HARD_CODED_DIRS lists it


def node_root(state_dir: Path) -> Path:
    """Where the node's files live: <state_dir>/realnode, or SHORT_ROOT if that is too deep."""
    root = state_dir / "realnode"
    return root if len(str(root)) <= MAX_ROOT else SHORT_ROOT


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where the node's files live: `root` is <state_dir>/realnode, `bin_dir` the node build."""

    root: Path
    bin_dir: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def runsc_config(self) -> Path:
        return self.root / "runsc.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.json"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.json"

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    def kubeconfig(self, identity: str) -> Path:
        return self.root / f"{identity}.kubeconfig"


def containerd_config(layout: Layout, *, sandbox_image: str) -> str:
    """containerd 2.x config (version 4): only what differs from its defaults."""
    r, b = layout.root / "containerd", layout.bin_dir
    return f"""version = 4
root = {_q(r / "root")}
state = {_q(r / "state")}
# `imports` always holds the default /etc/containerd/conf.d/*.toml (an empty list is "unset");
# this machine kind has no such files, and host_problem refuses a host that does.

[plugins.'io.containerd.server.v1.grpc']
  address = {_q(layout.containerd_socket)}

[plugins.'io.containerd.server.v1.ttrpc']
  address = {_q(r / "containerd.sock.ttrpc")}

[plugins.'io.containerd.internal.v1.opt']
  path = {_q(r / "opt")}

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = {_q(r / "image-verifier")}

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {_q(sandbox_image)}

[plugins.'io.containerd.cri.v1.runtime']
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []

  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{_q(CNI_BIN_DIR)}]
    conf_dir = {_q(layout.cni_conf_dir)}
    max_conf_num = 1

  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      runtime_path = {_q(b / "containerd-shim-runc-v2")}
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = {_q(RUNC)}
        Root = {_q(layout.root / "runc")}
        SystemdCgroup = false

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
      runtime_type = 'io.containerd.runsc.v1'
      runtime_path = {_q(b / "containerd-shim-runsc-v1")}
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]
        TypeUrl = 'io.containerd.runsc.v1.options'
        ConfigPath = {_q(layout.runsc_config)}
"""


def runsc_config(layout: Layout) -> str:
    """The gVisor shim's config: which runsc, its state root, and the flags runsc gets."""
    return f"""binary_name = {_q(layout.bin_dir / "runsc")}
root = {_q(layout.root / "runsc")}

[runsc_config]
  platform = "systrap"
"""


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """One bridge with host-local IPAM on POD_CIDR (its leases under the node's directory)."""
    return {
        "cniVersion": "1.0.0",
        "name": "agentkube-realnode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    # A default route through the bridge, as pods have in any cluster: they
                    # reach the node (and what a NetworkPolicy allows beyond it).
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.root / "cni" / "ipam"),
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    layout: Layout,
    *,
    port: int,
    healthz_port: int,
    ca_cert: Path,
    serving_cert: Path,
    serving_key: Path,
    taints: list[dict[str, str]],
    evented_pleg: bool,
) -> dict[str, Any]:
    socket = f"unix://{layout.containerd_socket}"
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "registerNode": True,
        "registerWithTaints": taints,
        "podLogsDir": str(layout.root / "pod-logs"),
        "volumePluginDir": str(layout.root / "volume-plugins"),
        "failSwapOn": False,
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_SERVICE_IP],
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        # The node's images are imported, never pulled: they must never be collected.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        # A fork bomb in one pod must not take the node's process table: the sandbox pool's
        # nodes cap every pod's processes (docs/sandbox-gateway.md).
        "podPidsLimit": 1024,
        "serializeImagePulls": False,
    }
    if evented_pleg:
        config["featureGates"] = {"EventedPLEG": True}
    return config


def kubelet_args(layout: Layout, labels: dict[str, str]) -> list[str]:
    return [
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig('kubelet')}",
        f"--root-dir={layout.kubelet_dir}",
        f"--cert-dir={layout.root / 'kubelet-pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
        "--v=1",
    ]


def containerd_args(layout: Layout) -> list[str]:
    return [f"--config={layout.containerd_config}", "--log-level=warn"]


def kube_router_args(layout: Layout) -> list[str]:
    """NetworkPolicy only: no routing, no service proxy, no CNI config of its own."""
    return [
        f"--kubeconfig={layout.kubeconfig('kube-router')}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-cni=false",
        "--enable-ipv6=false",
        "--health-port=0",
        "--metrics-port=0",
        f"--hostname-override={NODE_NAME}",
        "--v=1",
    ]


def kube_proxy_config(layout: Layout, *, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    """iptables mode for the node's pods; it changes no sysctl (conntrack limits and
    route_localnet stay as the host has them) and serves health and metrics on loopback."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kube_proxy_args(layout: Layout) -> list[str]:
    return [f"--config={layout.kube_proxy_config}", "--v=1"]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _q(value: object) -> str:
    """A TOML basic string (json.dumps escapes the same way for the paths used here)."""
    return json.dumps(str(value))
