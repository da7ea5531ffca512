"""Runtime errors.

UserError
├── ModelConfigError       the model cannot be configured from spec/flags/environment
└── ToolConfigError        a tool in spec.tools cannot run here
RuntimeFailure
├── ModelUnreachable       the model endpoint did not answer (connection, timeout)
├── ModelRequestFailed     the model endpoint answered with an error
├── TaskLimitReached       the task used up its budget (model requests, wall time)
└── DelegationFailed       a subtask could not be handed to its agent or its answer read
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class ModelConfigError(UserError):
    """The model configuration is invalid."""


class ToolConfigError(UserError):
    """A tool cannot be provided."""


class ModelUnreachable(RuntimeFailure):
    """The model endpoint could not be reached."""


class ModelRequestFailed(RuntimeFailure):
    """The model endpoint returned an error."""


class TaskLimitReached(RuntimeFailure):
    """The task was stopped at its budget: too many model requests, or past its timeout."""


class DelegationFailed(RuntimeFailure):
    """A subtask could not be handed over to its agent, or its answer not read."""
