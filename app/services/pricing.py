"""Money from the catalog's prices: decimal arithmetic only, never float."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")


def unit_price(product: Mapping[str, Any] | None) -> Decimal | None:
    """The product's `price` (or `precio`), when it is a usable non-negative number."""
    if product is None:
        return None
    raw = product.get("price", product.get("precio"))
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        # str() first: a JSON 9.95 arrives as a float, and Decimal(9.95) is not 9.95.
        price = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return price


def money(amount: Decimal | None) -> str | None:
    """At least two decimals (`9.5` → `"9.50"`), more when the catalog gives more."""
    if amount is None:
        return None
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(CENT)
    return f"{amount:f}"


def total(subtotals: Iterable[Decimal | None]) -> Decimal | None:
    """The sum, or None when any line has no price."""
    amounts = list(subtotals)
    if any(amount is None for amount in amounts):
        return None
    return sum((amount for amount in amounts if amount is not None), Decimal(0))
