"""Operator-layer errors.

UserError
├── OperatorConfigError    the operator configuration file is wrong: names file, field, fix
└── InjectionRefused       a pod's RAG annotations are wrong: names the annotation, the fix
RuntimeFailure
└── ReconcileError         a reconcile failed
    ├── TransientApiError  the API server is unreachable or overloaded: retry with back-off
    └── RejectedByApi      the API server rejected an object: retrying the same input is useless
        └── NamespaceTerminating   the namespace is being deleted: do not fight it
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class OperatorConfigError(UserError):
    """The operator configuration is malformed or invalid."""


class InjectionRefused(UserError):
    """A pod asked for the RAG proxy in a way it cannot be given; the pod is refused."""


class ReconcileError(RuntimeFailure):
    """A reconcile of one object failed."""


class TransientApiError(ReconcileError):
    """Worth retrying: the failure came from the environment, not from the object."""


class RejectedByApi(ReconcileError):
    """Not worth retrying until the object (or the configuration) changes."""


class NamespaceTerminating(RejectedByApi):
    """The object's namespace is being deleted; the operator must not fight the deletion."""
