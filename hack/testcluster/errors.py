"""Errors raised while building, starting or stopping the test cluster.

TestClusterError               base; the message says what failed and how to fix it
├── MissingPrerequisite        a binary or tool is not there (names the command that provides it)
├── StartupFailed              a component exited or never became ready (quotes its log)
└── NotRunning                 no cluster is recorded in the state directory
"""

from __future__ import annotations


class TestClusterError(Exception):
    """Base class: every message names the problem and the fix."""

    __test__ = False  # not a pytest test class, despite the name


class MissingPrerequisite(TestClusterError):
    """A binary or tool the cluster needs is missing."""


class StartupFailed(TestClusterError):
    """A component exited during start-up or did not become ready in time."""


class NotRunning(TestClusterError):
    """The state directory records no running cluster."""
