"""Operator-layer errors.

UserError
└── OperatorConfigError    the operator configuration file is wrong: names file, field, fix
RuntimeFailure
└── ReconcileError         a reconcile failed
    ├── TemporaryError     the API server is unreachable or overloaded: retry with back-off
    └── PermanentError     the API server rejected an object: retrying the same input is useless
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class OperatorConfigError(UserError):
    """The operator configuration is malformed or invalid."""


class ReconcileError(RuntimeFailure):
    """A reconcile of one object failed."""


class TemporaryError(ReconcileError):
    """Worth retrying: the failure came from the environment, not from the object."""


class PermanentError(ReconcileError):
    """Not worth retrying until the object (or the configuration) changes."""


class NamespaceTerminating(PermanentError):
    """The object's namespace is being deleted; the operator must not fight the deletion."""
