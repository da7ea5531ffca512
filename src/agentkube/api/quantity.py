"""Kubernetes resource quantities (``500m``, ``0.5``, ``128Mi``, ``1Gi``) as numbers.

Shared by the manifest layer (spec.sandbox, spec.resources) and the CLI flags (``--memory 128Mi``),
so one parser decides what a quantity means everywhere.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "K": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]{0,2})\s*$")


def parse_quantity(value: int | float | str) -> Decimal:
    """The value of a quantity; raises ``ValueError`` naming the accepted forms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{value!r} is not a quantity such as 500m, 0.5, 128Mi, 1Gi or 1048576")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as e:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"{value!r} is not a number") from e


def parse_bytes(value: int | float | str) -> int:
    """A memory/disk size in bytes (``128Mi`` -> 134217728)."""
    amount = parse_quantity(value)
    if amount <= 0:
        raise ValueError(f"{value!r} must be a positive size such as 128Mi")
    return int(amount)


def parse_cpu(value: int | float | str) -> float:
    """CPU cores (``500m`` -> 0.5)."""
    amount = parse_quantity(value)
    if amount <= 0:
        raise ValueError(f"{value!r} must be a positive number of cores such as 500m or 0.5")
    return float(amount)
