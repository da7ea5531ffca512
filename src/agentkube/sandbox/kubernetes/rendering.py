"""Pure decisions of the Kubernetes backend: what an execution's Job or warm pod looks like,
and what a finished pod means as an :class:`~agentkube.sandbox.contract.ExecutionResult`.

Every sandbox pod passes Pod Security ``restricted``: non-root, no privilege escalation, all
capabilities dropped, seccomp ``RuntimeDefault``, a read-only root filesystem with a size-limited
``emptyDir`` as its only writable place, no ServiceAccount token, no service links, and the
limits of the request (0.5 CPU / 128Mi by default). A Job has ``backoffLimit: 0`` (untrusted code
is never retried), an ``activeDeadlineSeconds`` backstop and ``ttlSecondsAfterFinished`` so that
the TTL controller removes it even if the gateway dies before it can. The namespace's deny-all
NetworkPolicy (:func:`deny_all_network_policy`) cuts every sandbox pod off the network, and the
pod runs no code until it sees that cut (``isolation_wait_s``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from agentkube.api.pod_contract import (
    GATEWAY_FIELD_MANAGER,
    restricted_container_security,
    restricted_pod_security,
)
from agentkube.api.quantity import format_cpu, format_mebibytes
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.kubernetes.pod_runner import (
    HANDOVER_COMMAND,
    HANDOVER_ENV,
    HANDOVER_STDIN_ENV,
    ISOLATION_WAIT_ENV,
    LOG_MARKER,
    MAX_REQUEST_BYTES,
    REQUEST_ENV,
    REQUEST_FILE_ENV,
)

JSON = dict[str, Any]
PREFIX = "agentkube.openvn/"
GATEWAY_LABEL = PREFIX + "sandbox-gateway"
EXECUTION_LABEL = PREFIX + "sandbox-execution"
WARM_LABEL = PREFIX + "sandbox-warm"  # "ready" until claimed, then "claimed"
REQUEST_ANNOTATION = PREFIX + "sandbox-request"
CONTAINER = "sandbox"
SCRATCH_PATH = "/scratch"
REQUEST_DIR = "/etc/agentkube-request"
# Where a warm pod's runner makes its handover FIFOs (pod_runner.Handover): the scratch volume,
# else /tmp (gVisor's own memory, where a volume of the host may refuse FIFOs).
HANDOVER_DIRS = (SCRATCH_PATH + "/.agentkube-handover", "/tmp/.agentkube-handover")
MAX_PAYLOAD_BYTES = MAX_REQUEST_BYTES  # the environment's and the annotations' limits allow it


@cache
def runner_source() -> str:
    """The pod's program (agentkube/sandbox/kubernetes/pod_runner.py), passed to ``python3 -c``."""
    return (
        resources.files("agentkube.sandbox.kubernetes").joinpath("pod_runner.py").read_text("utf-8")
    )


RUNTIME_CLASS_AUTO = "auto"  # gVisor where the cluster has it (runtime_class.py)


@dataclass(frozen=True, kw_only=True)
class PodSettings:
    """Where and how sandbox pods run; the gateway's configuration, not the agent's."""

    namespace: str = "agentkube-sandbox"
    gateway: str = GATEWAY_FIELD_MANAGER  # the gateway's name, on everything it creates
    image: str = "python:3.12-slim"
    image_pull_policy: str = "IfNotPresent"
    runtime_class_name: str | None = None
    node_selector: dict[str, str] = field(
        default_factory=lambda: {"agentkube.openvn/pool": "sandbox"}
    )
    tolerations: list[JSON] = field(
        default_factory=lambda: [
            {
                "key": "agentkube.openvn/pool",
                "operator": "Equal",
                "value": "sandbox",
                "effect": "NoSchedule",
            }
        ]
    )
    user_id: int = 65532
    startup_grace_s: int = 60
    ttl_seconds_after_finished: int = 60
    # How long a pod waits for its egress to be cut before it refuses to run (pod_runner's
    # await_isolation); None: run without checking (a cluster whose pods cannot reach the API).
    isolation_wait_s: float | None = 30.0


def payload(request: ExecutionRequest) -> str:
    """The request as the pod runner reads it (compact JSON)."""
    return json.dumps(
        {
            "language": request.language,
            "code": request.code,
            "files": request.files,
            "env": request.env,
            "timeout_s": request.limits.timeout_s,
            "output_bytes": request.limits.output_bytes,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _labels(settings: PodSettings, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "agentkube",
        "app.kubernetes.io/component": "sandbox",
        GATEWAY_LABEL: settings.gateway,
        EXECUTION_LABEL: name,
    }


def _container(limits: Limits, settings: PodSettings, env: list[JSON], mounts: list[JSON]) -> JSON:
    resources_ = {"cpu": format_cpu(limits.cpu), "memory": format_mebibytes(limits.memory_bytes)}
    if settings.isolation_wait_s is not None:
        env = [*env, {"name": ISOLATION_WAIT_ENV, "value": f"{settings.isolation_wait_s:g}"}]
    return {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python3", "-c", runner_source()],
        "workingDir": SCRATCH_PATH,
        "env": env,
        "resources": {"requests": resources_, "limits": resources_},
        "securityContext": restricted_container_security(settings.user_id),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_PATH}, *mounts],
    }


def pod_spec(
    limits: Limits,
    settings: PodSettings,
    *,
    env: list[JSON],
    volumes: list[JSON] | None = None,
    mounts: list[JSON] | None = None,
) -> JSON:
    """The locked-down spec every sandbox pod shares."""
    scratch = format_mebibytes(limits.scratch_bytes)
    spec: JSON = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": restricted_pod_security(settings.user_id),
        "nodeSelector": dict(settings.node_selector),
        "tolerations": [dict(t) for t in settings.tolerations],
        "containers": [_container(limits, settings, env, list(mounts or []))],
        "volumes": [
            {
                "name": "scratch",
                "emptyDir": {
                    "medium": "Memory",
                    "sizeLimit": scratch,
                },
            },
            *(volumes or []),
        ],
    }
    if settings.runtime_class_name == RUNTIME_CLASS_AUTO:
        raise ValueError("runtime_class_name 'auto' must be chosen (at start) before rendering")
    if settings.runtime_class_name:
        spec["runtimeClassName"] = settings.runtime_class_name
    return spec


def render_job(name: str, request: ExecutionRequest, settings: PodSettings) -> JSON:
    """The Job of one cold execution; the request travels in the pod's environment."""
    labels = _labels(settings, name)
    env = [{"name": REQUEST_ENV, "value": payload(request)}]
    deadline = math.ceil(request.limits.timeout_s) + settings.startup_grace_s
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(request.limits, settings, env=env),
            },
        },
    }


def render_warm_pod(name: str, limits: Limits, settings: PodSettings) -> JSON:
    """A single-use pod that waits for its request: handed over by exec (:func:`handover_command`)
    or, where the gateway may not exec, written into its annotation (a downward API volume)."""
    labels = {**_labels(settings, name), WARM_LABEL: "ready"}
    env = [
        {"name": REQUEST_FILE_ENV, "value": f"{REQUEST_DIR}/request"},
        {"name": HANDOVER_ENV, "value": ":".join(HANDOVER_DIRS)},
        {"name": HANDOVER_STDIN_ENV, "value": "1"},
    ]
    volume = {
        "name": "request",
        "downwardAPI": {
            "items": [
                {
                    "path": "request",
                    "fieldRef": {"fieldPath": f"metadata.annotations['{REQUEST_ANNOTATION}']"},
                }
            ]
        },
    }
    mount = {"name": "request", "mountPath": REQUEST_DIR, "readOnly": True}
    spec = pod_spec(limits, settings, env=env, volumes=[volume], mounts=[mount])
    # The gateway may attach to the runner's stdin (pods/attach): once, as stdinOnce closes it
    # when that first attach ends.
    spec["containers"][0].update(stdin=True, stdinOnce=True)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": spec,
    }


def handover_command() -> list[str]:
    """What the gateway runs in a claimed warm pod with ``pods/exec``: the request goes to its
    stdin as one line, the result comes back on its stdout as one JSON line. Fixed: nothing of
    the request is in the command."""
    return ["sh", "-c", HANDOVER_COMMAND, *HANDOVER_DIRS]


def handover_line(request: ExecutionRequest) -> bytes:
    """The request as the handover passes it: compact JSON (no raw newline) and a newline."""
    return payload(request).encode("utf-8") + b"\n"


def deny_all_network_policy(settings: PodSettings) -> JSON:
    """No ingress, no egress (not even DNS) for every pod of the sandbox namespace."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "sandbox-deny-all", "namespace": settings.namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


# -- reading a finished pod --------------------------------------------------------------------


def _container_state(pod: JSON) -> JSON | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            terminated = (status.get("state") or {}).get("terminated")
            return terminated if isinstance(terminated, dict) else None
    return None


def pod_finished(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed") or _container_state(pod) is not None


def result_from_json(message: str, elapsed_ms: float) -> ExecutionResult | None:
    """A result the runner wrote (termination message, log line, handover), or None."""
    return _from_message(message, elapsed_ms)


def _from_message(message: str, elapsed_ms: float) -> ExecutionResult | None:
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    killed = data.get("killed")
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    return ExecutionResult(
        exit_code=data.get("exit") if isinstance(data.get("exit"), int) else None,
        stdout=str(data.get("out", "")),
        stderr=str(data.get("err", "")),
        duration_ms=float(data.get("ms", elapsed_ms)),
        killed_reason=killed if killed in ("timeout", "memory", "output_limit", "pids") else None,
        truncated=bool(data.get("trunc", False)),
        files={str(k): str(v) for k, v in (files or {}).items()},
    )


def result_in_log(pod: JSON) -> bool:
    """Whether the finished pod's whole result is in its log (too large for the message)."""
    try:
        data = json.loads((_container_state(pod) or {}).get("message") or "")
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("log") is True


def result_from_pod(pod: JSON, elapsed_ms: float, log_line: str | None = None) -> ExecutionResult:
    """The execution's result from a finished pod's status (termination message, reason).

    ``log_line``: the last line of the pod's log, read when :func:`result_in_log`; its whole
    result replaces the message's cut copy. A line that is not the runner's leaves the cut copy.
    """
    status = pod.get("status") or {}
    terminated = _container_state(pod) or {}
    reason = terminated.get("reason")
    parsed = _from_message(terminated.get("message") or "", elapsed_ms)
    if parsed is not None and log_line and log_line.startswith(LOG_MARKER):
        parsed = _from_message(log_line[len(LOG_MARKER) :], elapsed_ms) or parsed
    if reason == "OOMKilled":
        # The cgroup's OOM killer may have hit the code (the runner then still reports) or the
        # runner itself (no report): either way memory is what ended it.
        if parsed is not None:
            return parsed.model_copy(update={"killed_reason": "memory"})
        code = terminated.get("exitCode")
        return ExecutionResult(
            exit_code=code if isinstance(code, int) else 137,
            stderr="the sandbox ran out of memory (OOMKilled)\n",
            duration_ms=elapsed_ms,
            killed_reason="memory",
        )
    if parsed is not None:
        return parsed
    if status.get("reason") == "DeadlineExceeded":
        return timeout_result(elapsed_ms)
    code = terminated.get("exitCode")
    detail = terminated.get("message") or reason or status.get("message") or "no message"
    return ExecutionResult(
        exit_code=code if isinstance(code, int) else None,
        stderr=f"the sandbox pod ended without a result: {detail}\n",
        duration_ms=elapsed_ms,
    )


def timeout_result(elapsed_ms: float) -> ExecutionResult:
    return ExecutionResult(
        exit_code=None,
        stderr="the sandbox hit its deadline (DeadlineExceeded)\n",
        duration_ms=elapsed_ms,
        killed_reason="timeout",
    )


def job_deadline_exceeded(job: JSON) -> bool:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return bool(condition.get("reason") == "DeadlineExceeded")
    return False
