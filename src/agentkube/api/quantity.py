"""Kubernetes resource quantities (``500m``, ``0.5``, ``128Mi``, ``1Gi``): one grammar, one parser.

The grammar is the pattern Kubernetes publishes for ``resource.Quantity`` (the CRDs carry it), so
a quantity the API server accepts is exactly one this module parses. The manifest models
(spec.sandbox, spec.resources), the CLI flags (``--memory 128Mi``), the operator's drift check and
the sandbox pod renderer all use it. lightkube has a parser too, but it comes with the ``[k8s]``
extra and the embedded mode must not need that.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
_PARTS = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
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
MiB = 2**20
_EXAMPLES = "500m, 0.5, 128Mi, 1Gi or 1048576"


def parse_quantity(value: int | float | str) -> Decimal:
    """The value of a quantity; raises ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as {_EXAMPLES}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite quantity")
        return Decimal(str(value))
    match = _PARTS.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as {_EXAMPLES}")
    try:
        number = Decimal(match["number"])
        if match["exponent"] is not None:
            return number.scaleb(int(match["exponent"]))
        return number * _SUFFIXES[match["suffix"] or ""]
    except InvalidOperation as e:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"{value!r} is not a number") from e


def quantity_or_none(value: object) -> Decimal | None:
    """The value of ``value`` if it is a quantity, else None (for comparing live objects)."""
    if not isinstance(value, (int, float, str)):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


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


def format_cpu(cores: float) -> str:
    """Cores as millicores, rounded up (0.5 -> ``500m``)."""
    return f"{max(1, math.ceil(cores * 1000))}m"


def format_mebibytes(size: int) -> str:
    """Bytes as whole mebibytes, rounded up (134217728 -> ``128Mi``)."""
    return f"{max(1, math.ceil(size / MiB))}Mi"
