"""The local sandbox backend: Linux namespaces (bubblewrap), cgroups and seccomp on this machine.

Standard library only, plus the ``bwrap`` binary; no Kubernetes. Modules, bottom up:
``isolation`` (the bubblewrap command line), ``cgroups`` (one cgroup per execution), ``seccomp``
(the syscall filter), ``streams`` (bounded output), ``spawning`` + ``_shim`` (the pid-1 shim),
``execution`` (watching one execution), ``warm_pool`` (pre-started single-use sandboxes) and
``backend`` (:class:`LocalSandbox`, the contract's implementation).
"""

from agentkube.sandbox.local.backend import LocalSandbox

__all__ = ["LocalSandbox"]
