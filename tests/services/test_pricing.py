"""Prices from the catalog, and the money computed from them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.services.pricing import money, subtotal, total, unit_price


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ({"price": 9.5}, "9.50"),
        ({"price": 9.95}, "9.95"),  # the float 9.95 is not quite 9.95; its decimal text is
        ({"price": 12}, "12.00"),
        ({"price": "3.10"}, "3.10"),
        ({"price": " 3.1 "}, "3.10"),
        ({"price": "1E+3"}, "1000.00"),
        ({"price": "0.1234567891"}, "0.1234567891"),
        ({"price": "2.50000000000000000000000000000000000000"}, "2.50"),
        ({"price": 0}, "0.00"),
        ({"price": "-0"}, "0.00"),
        ({"price": "-0.000"}, "0.00"),
        ({"price": -0.0}, "0.00"),
        ({"precio": 3.1}, "3.10"),
        ({"price": 1.5, "precio": 3.1}, "1.50"),
        ({"price": None, "precio": 3.1}, "3.10"),
    ],
)
def test_usable_prices(product: dict[str, Any], expected: str) -> None:
    assert money(unit_price(product)) == expected


@pytest.mark.parametrize(
    "product",
    [
        None,
        {},
        {"name": "no price"},
        {"price": None},
        {"price": True},
        {"price": "free"},
        {"price": "NaN"},
        {"price": "Infinity"},
        {"price": -1},
        {"price": {"amount": 3}},
        # Too large or too fine to compute with exactly and to store.
        {"price": 1e300},
        {"price": 10**30},
        {"price": 10**12},
        {"price": "0." + "1" * 45},
        {"price": 1e-45},
        {"price": "0.12345678901"},
    ],
)
def test_unusable_prices_are_no_price(product: dict[str, Any] | None) -> None:
    assert unit_price(product) is None


def test_subtotals_and_totals_are_exact_at_the_largest_amounts() -> None:
    price = unit_price({"price": "999999999999.9999999999"})
    assert price is not None

    line = subtotal(price, 100_000_000)

    assert money(line) == "99999999999999999999.9900000000"
    assert money(total([line, subtotal(price, 1)])) == "100000000999999999999.9899999999"


def test_a_line_without_price_makes_no_total() -> None:
    assert total([Decimal("1.00"), None]) is None
    assert subtotal(None, 3) is None
    assert money(None) is None
