"""Errors every layer shares.

    AgentkubeError
    ├── UserError          a mistake the user can fix (bad manifest, bad flag): CLI exit 2
    └── RuntimeFailure     something failed while running (endpoint down, sandbox broke): exit 1

Each layer keeps its own ``errors.py`` that subclasses these, so the CLI maps any of them to an
exit code and a one-line message without knowing the layer.
"""

from __future__ import annotations


class AgentkubeError(Exception):
    """Base of every error agentkube raises on purpose."""


class UserError(AgentkubeError):
    """The input is wrong; the message names what and how to fix it."""


class RuntimeFailure(AgentkubeError):
    """Something failed at run time; retrying or fixing the environment may help."""
