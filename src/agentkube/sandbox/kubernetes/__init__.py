"""The Kubernetes sandbox backend: one locked-down Job (or claimed warm pod) per execution.

Needs the ``[k8s]`` extra (lightkube). ``rendering`` is pure (what a Job or warm pod looks like,
what a finished pod means); ``pod_events`` keeps one pod watch; ``warm_pods`` keeps the pool of
pre-created pods; ``backend`` is :class:`KubernetesSandbox`. ``pod_runner`` is the program the
sandbox pod itself runs (standard library only, passed to ``python3 -c``).
"""

from agentkube.sandbox.kubernetes.backend import KubernetesSandbox

__all__ = ["KubernetesSandbox"]
