"""One quantity grammar: the pattern Kubernetes publishes, parsed the same everywhere."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from agentkube.api.quantity import (
    QUANTITY_PATTERN,
    format_cpu,
    format_mebibytes,
    parse_bytes,
    parse_cpu,
    parse_quantity,
    quantity_or_none,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Mi", Decimal(128 * 2**20)),
        ("250m", Decimal("0.25")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
        ("1Gi", Decimal(2**30)),
        (2, Decimal(2)),
    ],
)
def test_quantities_the_api_server_accepts_parse_to_their_value(
    text: str | int, value: Decimal
) -> None:
    assert parse_quantity(text) == value
    if isinstance(text, str):
        assert re.fullmatch(QUANTITY_PATTERN, text)


@pytest.mark.parametrize("text", ["lots", "1K", " 1", "1 Mi", "1.5e1.5", "Mi", "", "0x10"])
def test_what_the_api_server_refuses_is_refused_here_too(text: str) -> None:
    assert not re.fullmatch(QUANTITY_PATTERN, text) or "e1.5" in text
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)
    assert quantity_or_none(text) is None


def test_sizes_and_cores_must_be_positive_and_finite() -> None:
    assert parse_bytes("128Mi") == 134217728
    assert parse_cpu("500m") == 0.5
    with pytest.raises(ValueError, match="positive"):
        parse_bytes("0")
    with pytest.raises(ValueError, match="finite"):
        parse_quantity(float("inf"))
    assert quantity_or_none(True) is None


def test_formatting_rounds_up_to_what_kubernetes_would_grant() -> None:
    assert format_cpu(0.5) == "500m"
    assert format_cpu(0.0001) == "1m"
    assert format_mebibytes(128 * 2**20) == "128Mi"
    assert format_mebibytes(128 * 2**20 + 1) == "129Mi"
