"""What a failed Kubernetes API call means, decided once for the operator and the gateway.

Every call site that talks to the API server (the operator's applies and status patches, the
sandbox backend's Jobs, pods and NetworkPolicy) turns the client's exception into a
:class:`KubeFailure` here, then into its own layer's error: the operator retries what is
``transient`` and reports the rest on the object; the gateway answers 503 for what is
``unavailable`` and 500 for the rest. Transport errors and API errors go through the same door,
so the two components can no longer disagree about, say, a 503 from an overloaded API server.
Needs the ``[k8s]`` extra (lightkube).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx2
from lightkube import ApiError

Kind = Literal[
    "unreachable",  # no answer: connection refused, reset, timed out
    "throttled",  # 429
    "conflict",  # 409: someone else wrote in between
    "server",  # 5xx
    "forbidden",  # 401/403: this component lacks the rights (its RBAC)
    "not_found",  # 404
    "invalid",  # 400/422: the object itself is wrong
    "terminating",  # the namespace is being deleted
    "other",
]
TRANSIENT: frozenset[Kind] = frozenset({"unreachable", "throttled", "conflict", "server"})


@dataclass(frozen=True)
class KubeFailure:
    kind: Kind
    code: int | None
    detail: str

    @property
    def transient(self) -> bool:
        """Worth retrying as is: the failure came from the environment, not the request."""
        return self.kind in TRANSIENT

    @property
    def unavailable(self) -> bool:
        """The API server cannot serve this component right now (or ever, without new RBAC)."""
        return self.kind in TRANSIENT or self.kind == "forbidden"


def classify(error: BaseException) -> KubeFailure | None:
    """The failure ``error`` stands for, or None if it is not a Kubernetes client failure."""
    if isinstance(error, ApiError):
        code = error.status.code or 0
        detail = f"{error.status.message} ({code} {error.status.reason})"
        return KubeFailure(_kind(error, code), code, detail)
    if isinstance(error, (httpx2.TransportError, OSError)):
        return KubeFailure("unreachable", None, f"the API server is unreachable ({error!r})")
    return None


def _kind(error: ApiError, code: int) -> Kind:
    details = error.status.details
    causes = (details.causes if details else None) or []
    if any(cause.reason == "NamespaceTerminating" for cause in causes):
        return "terminating"
    if code >= 500:
        return "server"
    simple: dict[int, Kind] = {
        429: "throttled",
        409: "conflict",
        401: "forbidden",
        403: "forbidden",
        404: "not_found",
        400: "invalid",
        422: "invalid",
    }
    return simple.get(code, "other")
