"""What makes the real node's cluster route as a real one: the API server as a Service endpoint,
kube-proxy's identity, CoreDNS for `cluster.local`, and storage for PersistentVolumeClaims.

- `kubernetes` Service: the API server runs with `--endpoint-reconciler-type=none` (its address
  is loopback when it starts), so the node writes the Service's EndpointSlice itself: the node's
  IP and the API server's port, which kube-proxy then routes 10.96.0.1:443 to.
- kube-proxy authenticates as `system:kube-proxy`, bound to Kubernetes' `system:node-proxier`.
- CoreDNS runs as a pod on the node (the `kube-dns` Service at nodeconfig.DNS_SERVICE_IP, pods
  labelled `k8s-app: kube-dns` in kube-system, as every cluster's NetworkPolicies expect it):
  uid 65532, no capabilities, a read-only root; port 53 through the namespaced sysctl
  `net.ipv4.ip_unprivileged_port_start`, not NET_BIND_SERVICE.
- Storage: a default StorageClass `standard` and STATIC_VOLUMES pre-made hostPath volumes in the
  node's directory (static PVs the cluster manages, reclaim `Retain`): a claim binds to one, as
  `memory: persistent` agents need. No provisioner runs; `down` removes the directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import nodeconfig

JSON = dict[str, Any]
KUBE_SYSTEM = "kube-system"
STORAGE_CLASS = "standard"
STATIC_VOLUMES = 12
# Nominal: hostPath enforces no size (the node's tmpfs is 4 GiB in all); large enough that
# deploy/memory's claims (Redis 8Gi, Chroma 20Gi) bind as the agents' 1Gi ones do.
VOLUME_SIZE = "32Gi"
COREDNS_UID = 65532
COREFILE = """.:53 {
    errors
    health :8080 {
        lameduck 1s
    }
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
    loadbalance
}
"""


def api_endpoint_slice(port: int) -> JSON:
    """The `kubernetes` Service's endpoints: the API server on the node's IP."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "agentkube-testcluster",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [nodeconfig.NODE_IP], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


def objects(coredns_image: str, tolerations: list[dict[str, str]]) -> list[tuple[str, JSON]]:
    """(collection path, object) for everything the node's cluster gets, in creation order."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    return [
        (f"{rbac}/clusterrolebindings", _binding("agentkube-testcluster:kube-proxy",
                                                 "system:node-proxier", "User",
                                                 "system:kube-proxy")),
        (f"{rbac}/clusterroles", _coredns_role()),
        (f"{rbac}/clusterrolebindings", _binding("agentkube-testcluster:coredns",
                                                 "agentkube-testcluster:coredns",
                                                 "ServiceAccount", "coredns")),
        (f"/api/v1/namespaces/{KUBE_SYSTEM}/serviceaccounts", _meta("ServiceAccount", "coredns")),
        (f"/api/v1/namespaces/{KUBE_SYSTEM}/configmaps", _corefile()),
        (f"/api/v1/namespaces/{KUBE_SYSTEM}/services", _dns_service()),
        (f"/apis/apps/v1/namespaces/{KUBE_SYSTEM}/deployments",
         _coredns_deployment(coredns_image, tolerations)),
        ("/apis/storage.k8s.io/v1/storageclasses", _storage_class()),
    ]  # fmt: skip


def volumes(volumes_dir: Path) -> list[tuple[str, JSON]]:
    """The static PersistentVolumes (their directories are made by the caller)."""
    return [
        ("/api/v1/persistentvolumes", _volume(i, volumes_dir / f"pv-{i}"))
        for i in range(STATIC_VOLUMES)
    ]


def _meta(kind: str, name: str, **extra: Any) -> JSON:
    api_version = "apps/v1" if kind == "Deployment" else "v1"
    labels = {"k8s-app": "kube-dns"}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": KUBE_SYSTEM, "labels": labels},
        **extra,
    }


def _binding(name: str, role: str, kind: str, subject: str) -> JSON:
    who: JSON = {"kind": kind, "name": subject}
    if kind == "ServiceAccount":
        who["namespace"] = KUBE_SYSTEM
    else:
        who["apiGroup"] = "rbac.authorization.k8s.io"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [who],
    }


def _coredns_role() -> JSON:
    read = ["list", "watch"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "agentkube-testcluster:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ],
    }


def _corefile() -> JSON:
    return _meta("ConfigMap", "coredns", data={"Corefile": COREFILE})


def _dns_service() -> JSON:
    ports = [
        {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"},
    ]
    service = _meta(
        "Service",
        "kube-dns",
        spec={
            "clusterIP": nodeconfig.DNS_SERVICE_IP,
            "selector": {"k8s-app": "kube-dns"},
            "ports": ports,
        },
    )
    service["metadata"]["labels"]["kubernetes.io/name"] = "CoreDNS"
    return service


def _coredns_deployment(image: str, tolerations: list[dict[str, str]]) -> JSON:
    container = {
        "name": "coredns",
        "image": image,
        "imagePullPolicy": "Never",  # imported into the node's containerd, never pulled
        "command": ["/coredns", "-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    pod = {
        "serviceAccountName": "coredns",
        "dnsPolicy": "Default",  # not itself
        "priorityClassName": "system-cluster-critical",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": COREDNS_UID,
            "runAsGroup": COREDNS_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}],
        },
        "nodeSelector": {"kubernetes.io/hostname": nodeconfig.NODE_NAME},
        "tolerations": tolerations,
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }
    selector = {"k8s-app": "kube-dns"}
    return _meta(
        "Deployment",
        "coredns",
        spec={
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": pod},
        },
    )


def _storage_class() -> JSON:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def _volume(index: int, path: Path) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"testcluster-pv-{index}", "labels": {"agentkube-testcluster": "pv"}},
        "spec": {
            "capacity": {"storage": VOLUME_SIZE},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(path), "type": "Directory"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [nodeconfig.NODE_NAME],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
