"""Whether a cluster gets a real node: asked for, required in CI, refused with a reason."""

from __future__ import annotations

import os

import pytest
from hack.testcluster import realnode
from hack.testcluster.errors import StartupFailed


@pytest.mark.parametrize(
    ("value", "ci", "expected"),
    [
        ("", "", "auto"),
        ("", "1", "require"),
        ("auto", "", "auto"),
        ("1", "", "require"),
        ("off", "1", "off"),
    ],
)
def test_the_real_node_is_wanted_as_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, value: str, ci: str, expected: str
) -> None:
    monkeypatch.setenv(realnode.WANT_ENV, value)
    monkeypatch.setenv("CI", ci)
    assert realnode.wanted() == expected


def test_a_misspelt_choice_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(realnode.WANT_ENV, "maybe")
    with pytest.raises(StartupFailed, match=realnode.WANT_ENV):
        realnode.wanted()


def test_a_host_without_root_gets_a_one_line_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = realnode.host_problem()
    assert reason is not None and "root" in reason and "\n" not in reason
