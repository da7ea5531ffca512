"""Certificates and keys for a loopback cluster, made with the `openssl` command.

One throw-away CA signs the API server's serving certificate, one client certificate per
identity (admin, controller manager, scheduler, kwok, and the API server's own for calling
kubelets) and, on demand, a kubelet's serving certificate and the real node's client
certificates; an EC key signs service-account tokens.
P-256 keys keep generation under a second. Everything is valid for 30 days and lives in the
cluster's state directory.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .binaries import require_tool

DAYS = "30"
SERVICE_IP = "10.96.0.1"  # first address of the service range: the `kubernetes` Service
SERVING_SANS = (
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)
# identity -> (common name = user name, organisation = group, or "" for none)
CLIENTS: dict[str, tuple[str, str]] = {
    "admin": ("agentkube-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kwok": ("kwok-controller", "system:masters"),
    # The API server shows this to kubelets (logs, exec); a real kubelet authorizes it by webhook.
    "kube-apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ""),
}


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving: KeyPair
    sa_key: Path
    sa_pub: Path
    clients: dict[str, KeyPair]


def generate(directory: Path) -> Pki:
    """Write a fresh CA, serving and client certificates and the service-account key pair."""
    ssl = _OpenSSL(require_tool("openssl", "install it with `apt-get install openssl`"), directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = ssl.key("ca"), directory / "ca.crt"
    ssl.run(
        "req",
        "-x509",
        "-new",
        "-key",
        ca_key,
        "-subj",
        "/CN=agentkube-testcluster-ca",
        "-days",
        DAYS,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        ca_cert,
    )
    serving = ssl.signed(
        "apiserver",
        "/CN=kube-apiserver",
        "serverAuth",
        ca_cert,
        ca_key,
        sans=",".join(SERVING_SANS),
    )
    clients = {
        name: ssl.signed(name, _subject(cn, org), "clientAuth", ca_cert, ca_key)
        for name, (cn, org) in CLIENTS.items()
    }
    sa_key, sa_pub = ssl.key("sa"), directory / "sa.pub"
    ssl.run("pkey", "-in", sa_key, "-pubout", "-out", sa_pub)
    return Pki(
        ca_cert=ca_cert,
        ca_key=ca_key,
        serving=serving,
        sa_key=sa_key,
        sa_pub=sa_pub,
        clients=clients,
    )


def kubelet_serving(directory: Path, node: str, ip: str = "127.0.0.1") -> KeyPair:
    """A serving certificate for ``node``'s kubelet endpoint at ``ip``, signed by the CA that
    ``generate`` wrote into ``directory`` (the API server checks it with
    --kubelet-certificate-authority)."""
    ssl = _OpenSSL(require_tool("openssl", "install it with `apt-get install openssl`"), directory)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    return ssl.signed(
        f"kubelet-{node}", f"/CN={node}", "serverAuth", ca_cert, ca_key, f"IP:{ip},DNS:{node}"
    )


def client(directory: Path, name: str, user: str, group: str = "") -> KeyPair:
    """A client certificate for ``user`` (in ``group``, if given) from the CA in ``directory``:
    the real node's kubelet is ``system:node:<node>`` in ``system:nodes``."""
    ssl = _OpenSSL(require_tool("openssl", "install it with `apt-get install openssl`"), directory)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    return ssl.signed(name, _subject(user, group), "clientAuth", ca_cert, ca_key)


def _subject(cn: str, org: str) -> str:
    return f"/O={org}/CN={cn}" if org else f"/CN={cn}"


@dataclass(frozen=True)
class _OpenSSL:
    binary: str
    directory: Path

    def run(self, *args: str | Path) -> None:
        argv = [self.binary, *map(str, args)]
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"`{' '.join(argv)}` failed: {e.stderr.strip()}") from e

    def key(self, name: str) -> Path:
        path = self.directory / f"{name}.key"
        self.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        path.chmod(0o600)
        return path

    def signed(
        self, name: str, subject: str, usage: str, ca_cert: Path, ca_key: Path, sans: str = ""
    ) -> KeyPair:
        key, csr, cert = (
            self.key(name),
            self.directory / f"{name}.csr",
            self.directory / f"{name}.crt",
        )
        ext = self.directory / f"{name}.ext"
        lines = [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        self.run("req", "-new", "-key", key, "-subj", subject, "-out", csr)
        self.run(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_cert,
            "-CAkey",
            ca_key,
            "-set_serial",
            str(secrets.randbits(62) + 1),
            "-days",
            DAYS,
            "-extfile",
            ext,
            "-out",
            cert,
        )
        csr.unlink()
        ext.unlink()
        return KeyPair(cert=cert, key=key)
