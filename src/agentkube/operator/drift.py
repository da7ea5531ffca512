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

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIXES = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}  # fmt: skip
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_QUANTITY_PARENTS = {"requests", "limits", "capacity", "hard"}


def quantity(value: object) -> Decimal | None:
    """The value of a Kubernetes quantity, or None if ``value`` is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    match = _QUANTITY.match(str(value))
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]
    except InvalidOperation:
        return None


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
    want = quantity(desired)
    return want is not None and want == quantity(live)


def drifted(live: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether ``desired`` must be (re)applied: the object is missing or differs."""
    return live is None or not contains(live, desired)
