from __future__ import annotations

from datetime import UTC, datetime

from agentkube.operator.status import (
    Check,
    conditions,
    deployment_available,
    new_failures,
    status_patch,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 1, 2, tzinfo=UTC)
OK = Check(type="ModelResolved", ok=True, reason="ModelFound", message="m")
MISSING = Check(type="ModelResolved", ok=False, reason="ModelNotFound", message="no Model 'x'")


def test_ready_is_true_only_when_every_condition_holds() -> None:
    result = conditions([OK], [], 3, T0)
    assert [(c["type"], c["status"]) for c in result] == [
        ("ModelResolved", "True"),
        ("Ready", "True"),
    ]
    assert all(c["observedGeneration"] == 3 for c in result)


def test_ready_carries_the_reason_of_the_first_failure() -> None:
    ready = conditions([MISSING, OK], [], 1, T0)[-1]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ModelNotFound",
        "no Model 'x'",
    )


def test_an_unchanged_status_keeps_its_transition_time_and_needs_no_write() -> None:
    first = conditions([OK], [], 1, T0)
    again = conditions([OK], first, 1, T1)
    assert again == first
    live = {"conditions": first, "observedGeneration": 1}
    assert status_patch(live, {"conditions": again, "observedGeneration": 1}) is None


def test_a_changed_status_moves_the_transition_time() -> None:
    first = conditions([OK], [], 1, T0)
    later = conditions([MISSING], first, 2, T1)
    assert later[0]["lastTransitionTime"] == "2025-01-02T00:00:00Z"
    assert status_patch({"conditions": first}, {"conditions": later}) == {"conditions": later}


def test_only_new_failures_are_worth_an_event() -> None:
    failing = conditions([MISSING], [], 1, T0)
    assert [c["reason"] for c in new_failures([], failing)] == ["ModelNotFound"]
    assert new_failures(failing, conditions([MISSING], failing, 1, T1)) == []


def test_a_deployment_is_available_once_its_current_spec_rolled_out() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2},
    }
    assert deployment_available(dep).ok
    stale = {**dep, "status": {**dep["status"], "observedGeneration": 1}}
    assert not deployment_available(stale).ok
    assert deployment_available(None).reason == "NotCreated"
    assert (
        deployment_available({"metadata": {"generation": 1}, "spec": {"replicas": 0}}).ok is False
    )
