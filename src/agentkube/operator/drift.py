"""Does a live object still match what the operator would apply? (pure)

The live object is a superset of the applied one: the API server adds defaults (``protocol:
TCP``, ``clusterIP``, ``revisionHistoryLimit`` …) and other controllers add their own fields. So
the check is *containment*: every field the operator renders must be present with the same
value. Maps may have extra keys; lists must match element by element. Quantities are compared by
value because the API server canonicalises them (``0.5`` becomes ``500m``). Removing a field is
caught by the hash annotation :func:`agentkube.operator.naming.stamp` adds.

When nothing drifted the operator sends no request at all: this is what makes a reconcile of an
unchanged Agent write nothing.
"""

from __future__ import annotations

from typing import Any

from agentkube.api.quantity import quantity_or_none

_QUANTITY_PARENTS = {"requests", "limits", "capacity", "hard"}


def contains(live: Any, desired: Any, parent: str = "") -> bool:
    """Whether ``live`` holds every field of ``desired`` with an equal value.

    ``parent`` is the key of the enclosing map: under ``requests``/``limits``/``capacity``/
    ``hard`` (resource lists) values are quantities and compare by value.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        if parent in _QUANTITY_PARENTS:
            return all(k in live and _same_quantity(live[k], v) for k, v in desired.items())
        return all(k in live and contains(live[k], v, k) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(contains(lv, dv, parent) for lv, dv in zip(live, desired, strict=True))
    return bool(live == desired)


def _same_quantity(live: object, desired: object) -> bool:
    if live == desired:
        return True
    want = quantity_or_none(desired)
    return want is not None and want == quantity_or_none(live)


def drifted(live: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether ``desired`` must be (re)applied: the object is missing or differs."""
    return live is None or not contains(live, desired)


def adoption_conflict(live: dict[str, Any] | None, desired: dict[str, Any]) -> str | None:
    """Why ``live`` must not be taken over by applying ``desired``, or None when it may.

    Server-side apply with ``force`` would silently adopt any object of the same name: a
    hand-made Service, another Agent's Deployment. Only an object that already names the same
    controller (owner uid) as ``desired`` is the operator's to write.
    """
    if live is None:
        return None
    owner = next(o for o in desired["metadata"]["ownerReferences"] if o.get("controller"))
    refs = live.get("metadata", {}).get("ownerReferences") or []
    if any(r.get("uid") == owner["uid"] and r.get("controller") for r in refs):
        return None
    meta = desired["metadata"]
    return (
        f"{desired['kind']} {meta['namespace']}/{meta['name']} already exists and is not "
        f"controlled by {owner['kind']} {owner['name']}; the operator does not adopt it: "
        f"delete or rename that {desired['kind']}, or rename the {owner['kind']}"
    )
