"""One translation of Kubernetes client failures; the operator and the gateway agree on it."""

from __future__ import annotations

import httpx2
import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status, StatusCause, StatusDetails

from agentkube.kube_errors import classify
from agentkube.operator.applying import _translated as operator_translated
from agentkube.operator.errors import NamespaceTerminating, RejectedByApi, TransientApiError
from agentkube.sandbox.errors import SandboxFailure, SandboxUnavailable
from agentkube.sandbox.kubernetes.backend import _translated as gateway_translated


def api_error(code: int, reason: str = "", cause: str | None = None) -> ApiError:
    details = StatusDetails(causes=[StatusCause(reason=cause)]) if cause else None
    return ApiError(
        status=Status(code=code, reason=reason, message=f"boom {code}", details=details)
    )


@pytest.mark.parametrize(
    ("error", "kind", "transient"),
    [
        (httpx2.ConnectError("refused"), "unreachable", True),
        (ConnectionResetError("reset"), "unreachable", True),
        (api_error(429, "TooManyRequests"), "throttled", True),
        (api_error(409, "Conflict"), "conflict", True),
        (api_error(503, "ServiceUnavailable"), "server", True),
        (api_error(403, "Forbidden"), "forbidden", False),
        (api_error(404, "NotFound"), "not_found", False),
        (api_error(422, "Invalid"), "invalid", False),
        (api_error(403, "Forbidden", cause="NamespaceTerminating"), "terminating", False),
    ],
)
def test_each_failure_is_classified_once(error: Exception, kind: str, transient: bool) -> None:
    failure = classify(error)
    assert failure is not None
    assert (failure.kind, failure.transient) == (kind, transient)


def test_other_exceptions_are_not_kubernetes_failures() -> None:
    assert classify(ValueError("mine")) is None


@pytest.mark.parametrize(
    ("error", "operator", "gateway"),
    [
        (api_error(503), TransientApiError, SandboxUnavailable),
        (httpx2.ReadTimeout("slow"), TransientApiError, SandboxUnavailable),
        (api_error(403), RejectedByApi, SandboxUnavailable),
        (api_error(422), RejectedByApi, SandboxFailure),
        (api_error(403, cause="NamespaceTerminating"), NamespaceTerminating, SandboxFailure),
    ],
)
async def test_the_operator_and_the_gateway_agree(
    error: Exception, operator: type[Exception], gateway: type[Exception]
) -> None:
    with pytest.raises(operator, match="apply x"):
        async with operator_translated("apply x"):
            raise error
    with pytest.raises(gateway, match="create y"):
        async with gateway_translated("create y"):
            raise error
