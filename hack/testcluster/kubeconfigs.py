"""Self-contained kubeconfig files (certificates embedded) for the cluster's identities."""

from __future__ import annotations

import base64
import json
from pathlib import Path


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    client_cert: Path | None,
    client_key: Path | None,
    user: str,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """A self-contained kubeconfig (JSON, which every YAML reader accepts) with data embedded."""
    creds: dict[str, str] = {}
    if token is not None:
        creds["token"] = token
    if client_cert is not None and client_key is not None:
        creds["client-certificate-data"] = _b64(client_cert)
        creds["client-key-data"] = _b64(client_key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "agentkube-testcluster",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {
                "name": user,
                "context": {
                    "cluster": "agentkube-testcluster",
                    "user": user,
                    "namespace": namespace,
                },
            }
        ],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
