"""Status conditions of Agents and Models, computed from facts (pure).

Agent conditions:

- ``ModelResolved`` — ``spec.model`` names a Model (or the default endpoint serves it);
- ``MemoryReady`` — with shared memory configured only: the namespace's Redis credentials and
  ACL user are in place (:mod:`agentkube.operator.memory_access`);
- ``Reconciled`` — every child was rendered and applied;
- ``Available`` — the Deployment has its replicas updated and available;
- ``Ready`` — all of the above; its reason is the first failing one's.

A condition keeps its ``lastTransitionTime`` while its status does not change, so computing the
status of an unchanged object gives back exactly the live status and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Check:
    """One condition as the reconcile found it."""

    type: str
    ok: bool
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment_available(deployment: JSON | None) -> Check:
    """Whether a Deployment rolled out its current spec and has its replicas available."""
    if deployment is None:
        return Check(type="Available", ok=False, reason="NotCreated", message="no Deployment yet")
    want = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    observed = int(status.get("observedGeneration", 0)) >= int(generation)
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    if observed and updated >= want and available >= want:
        return Check(
            type="Available",
            ok=True,
            reason="MinimumReplicasAvailable",
            message=f"{available}/{want} replicas available",
        )
    return Check(
        type="Available",
        ok=False,
        reason="RollingOut" if observed else "Pending",
        message=f"{available}/{want} replicas available, {updated} updated",
    )


def ready(checks: Iterable[Check]) -> Check:
    failing = next((c for c in checks if not c.ok), None)
    if failing is None:
        return Check(type="Ready", ok=True, reason="Ready", message="all conditions are met")
    return Check(type="Ready", ok=False, reason=failing.reason, message=failing.message)


def conditions(
    checks: list[Check], previous: list[JSON], generation: int | None, now: datetime
) -> list[JSON]:
    """The conditions list, keeping transition times of conditions whose status is unchanged."""
    return as_conditions([*checks, ready(checks)], previous, generation, now)


def as_conditions(
    checks: list[Check], previous: list[JSON], generation: int | None, now: datetime
) -> list[JSON]:
    """Exactly ``checks`` as conditions (no ``Ready`` derived), transition times kept."""
    before = {c.get("type"): c for c in previous}
    result = []
    for check in checks:
        status = "True" if check.ok else "False"
        old = before.get(check.type)
        since = (
            old["lastTransitionTime"]
            if old and old.get("status") == status and old.get("lastTransitionTime")
            else timestamp(now)
        )
        condition: JSON = {
            "type": check.type,
            "status": status,
            "reason": check.reason,
            "message": check.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        result.append(condition)
    return result


def new_failures(previous: list[JSON], current: list[JSON]) -> list[JSON]:
    """Conditions that just turned False or changed their failure reason: worth an Event."""
    before = {c.get("type"): c for c in previous}
    failures = []
    for condition in current:
        if condition["status"] != "False" or condition["type"] == "Ready":
            continue
        old = before.get(condition["type"])
        if old is None or old.get("status") != "False" or old.get("reason") != condition["reason"]:
            failures.append(condition)
    return failures


def status_patch(live_status: JSON | None, wanted: JSON) -> JSON | None:
    """The status fields to write, or None when the live status already says it all."""
    live = live_status or {}
    changed = {k: v for k, v in wanted.items() if live.get(k) != v}
    return changed or None
