"""A minimal HTTPS client for the few API calls start-up needs (health, nodes, service accounts).

Standard library only, so `hack/testcluster/testcluster up` runs without the venv; tests use
kubectl or a real Kubernetes client on the kubeconfig instead.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Api:
    server: str  # https://127.0.0.1:<port>
    ca_cert: Path
    client_cert: Path
    client_key: Path

    def get(self, path: str, timeout: float = 5.0) -> str:
        return self._request("GET", path, None, timeout)

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        return json.loads(self.get(path, timeout))

    def post_json(self, path: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
        return json.loads(self._request("POST", path, json.dumps(body).encode(), timeout))

    def patch_json(self, path: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
        """A JSON merge patch."""
        data = json.dumps(body).encode()
        content_type = "application/merge-patch+json"
        return json.loads(self._request("PATCH", path, data, timeout, content_type))

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        timeout: float,
        content_type: str = "application/json",
    ) -> str:
        req = urllib.request.Request(  # noqa: S310 (always https to our own API server)
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._context()) as resp:  # noqa: S310
                return str(resp.read().decode())
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from e


def probe(url: str, timeout: float = 2.0) -> bool:
    """True when url answers 200 (TLS not verified: a component's self-signed health port)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False
