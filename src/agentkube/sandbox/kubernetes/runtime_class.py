"""Which container runtime sandbox pods ask for: gVisor where the cluster has it.

A sandbox runs model-written code, so the stronger boundary is the default: with
``runtime_class_name="auto"`` (the gateway's default) the backend looks up the RuntimeClass
``gvisor`` once at start and, if it exists, every sandbox pod names it (gVisor's user-space kernel
between the code and the node's kernel); if it does not, pods run on the node's default runtime
(runc: namespaces, cgroups, seccomp) and the gateway says so in its log. A name asks for that
RuntimeClass and nothing else (a missing one makes every Job fail at once, naming it); ``None``
asks for the node's default. Reading the RuntimeClass needs ``get`` on ``runtimeclasses``
(deploy/gateway/rbac.yaml); without that right the start fails, naming the fix, rather than
quietly choosing the weaker runtime.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube import ApiError
from lightkube.resources.node_v1 import RuntimeClass

from agentkube.kube_errors import classify
from agentkube.sandbox.errors import SandboxUnavailable
from agentkube.sandbox.kubernetes.rendering import RUNTIME_CLASS_AUTO as AUTO

PREFERRED = "gvisor"

log = logging.getLogger(__name__)


async def choose_runtime_class(
    client: Any, asked: str | None, *, preferred: str = PREFERRED
) -> str | None:
    """The RuntimeClass sandbox pods name: ``asked`` itself unless it is :data:`AUTO`, then
    ``preferred`` if the cluster has it, else None (the nodes' default runtime)."""
    if asked != AUTO:
        return asked
    try:
        await client.get(RuntimeClass, preferred)
    except ApiError as e:
        if e.status.code == 404:
            log.warning(
                "no RuntimeClass %r in this cluster: sandbox pods run on the nodes' default "
                "runtime (runc); install gVisor for a stronger boundary (docs/sandbox-gateway.md)",
                preferred,
            )
            return None
        raise _unavailable(e, preferred) from e
    except Exception as e:
        if classify(e) is None:
            raise
        raise _unavailable(e, preferred) from e
    log.info("sandbox pods run on RuntimeClass %r", preferred)
    return preferred


def _unavailable(error: BaseException, preferred: str) -> SandboxUnavailable:
    failure = classify(error)
    detail = failure.detail if failure else repr(error)
    return SandboxUnavailable(
        f"cannot read RuntimeClass {preferred!r} to choose the sandbox runtime ({detail}); grant "
        "get on runtimeclasses (deploy/gateway/rbac.yaml) or pass --runtime-class NAME|none"
    )
