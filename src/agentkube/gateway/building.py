"""From the gateway's flags to a backend and an authenticator (the CLI stays thin).

``backend="local"`` serves :class:`~agentkube.sandbox.local.LocalSandbox` on this machine;
``backend="kubernetes"`` serves :class:`~agentkube.sandbox.kubernetes.KubernetesSandbox` with the
credentials of the gateway's own ServiceAccount (in a pod) or the current kubeconfig.
``auth="tokenreview"`` checks projected ServiceAccount tokens with the API server; ``auth="static"``
reads ``<token> <name>`` lines from a file (one machine, or callers outside the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentkube.api.pod_contract import GATEWAY_FIELD_MANAGER, SANDBOX_GATEWAY_AUDIENCE
from agentkube.gateway.auth import (
    Authenticator,
    CachingAuthenticator,
    StaticTokens,
    TokenReviewAuthenticator,
)
from agentkube.gateway.errors import GatewayConfigError
from agentkube.sandbox.contract import Limits, Sandbox
from agentkube.sandbox.errors import SandboxRequestError
from agentkube.sandbox.kubernetes.rendering import JSON, PodSettings
from agentkube.sandbox.policy import DEFAULT_POLICY, SandboxPolicy, load_policy

K8S_HINT = "the kubernetes backend needs lightkube: install agentkube[k8s]"


@dataclass(frozen=True, kw_only=True)
class GatewayOptions:
    backend: Literal["local", "kubernetes"] = "local"
    auth: Literal["tokenreview", "static"] = "tokenreview"
    token_file: Path | None = None
    audience: str = SANDBOX_GATEWAY_AUDIENCE
    pool_size: int = 0
    pods: PodSettings = field(default_factory=PodSettings)
    kubeconfig: Path | None = None
    policy: SandboxPolicy = DEFAULT_POLICY


def parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    """``key=value`` flags as a dict; GatewayConfigError names a malformed one."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise GatewayConfigError(f"{flag} {value!r} must look like key=value")
        pairs[key] = val
    return pairs


def parse_toleration(value: str) -> JSON:
    """``key=value:Effect`` (or ``key:Effect``) as a toleration."""
    pair, sep, effect = value.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise GatewayConfigError(
            f"--toleration {value!r} must look like key=value:NoSchedule "
            "(effect NoSchedule, PreferNoSchedule or NoExecute)"
        )
    key, has_value, val = pair.partition("=")
    if has_value:
        return {"key": key, "operator": "Equal", "value": val, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def kube_client(kubeconfig: Path | None) -> Any:
    try:
        from lightkube import AsyncClient, KubeConfig
    except ImportError as e:
        raise GatewayConfigError(K8S_HINT) from e
    from lightkube.core.exceptions import ConfigError

    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except (ConfigError, OSError) as e:
        raise GatewayConfigError(
            f"no usable Kubernetes configuration ({e}); pass --kubeconfig, run in a pod, or on "
            "one machine use --backend local --auth static --token-file FILE"
        ) from e
    return AsyncClient(config=config, field_manager=GATEWAY_FIELD_MANAGER)


def open_authenticator(options: GatewayOptions, client: Any | None) -> Authenticator:
    if options.auth == "static":
        if options.token_file is None:
            raise GatewayConfigError("--auth static needs --token-file (lines `<token> <name>`)")
        return StaticTokens.from_file(options.token_file)
    if client is None:
        client = kube_client(options.kubeconfig)
    return CachingAuthenticator(TokenReviewAuthenticator(client, audiences=(options.audience,)))


def open_backend(options: GatewayOptions, client: Any | None) -> Sandbox:
    if options.backend == "local":
        from agentkube.sandbox.local import LocalSandbox

        return LocalSandbox(pool_size=options.pool_size, policy=options.policy)
    from agentkube.sandbox.kubernetes import KubernetesSandbox

    return KubernetesSandbox(
        client or kube_client(options.kubeconfig),
        options.pods,
        warm_pool=options.pool_size,
        warm_limits=Limits(),
        policy=options.policy,
    )


def open_policy(path: Path | None) -> SandboxPolicy:
    """The policy of ``--policy FILE``, or the defaults; a bad file is one line, exit 2."""
    if path is None:
        return DEFAULT_POLICY
    try:
        return load_policy(path)
    except SandboxRequestError as e:
        raise GatewayConfigError(f"--policy {e}") from e
