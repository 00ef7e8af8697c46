"""Money from the catalog's prices: decimal arithmetic only, never float."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

CENT = Decimal("0.01")
# A unit price the service can compute with exactly and store (amounts are kept as text of
# at most 40 characters): below a trillion, with at most ten decimal places. The largest
# subtotal or total is then below 10**20 (10**8 units at most per purchase), 31 characters.
MAX_PRICE = Decimal(10) ** 12
MAX_PRICE_PLACES = 10
# Wide enough for every product of such prices and quantities, so nothing is ever rounded;
# if that assumption broke, Inexact would raise instead of selling at a rounded price.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


def unit_price(product: Mapping[str, Any] | None) -> Decimal | None:
    """The product's `price` (or `precio`), when it is a usable non-negative amount.

    Anything else (not a number, negative, too large, or finer than `MAX_PRICE_PLACES`
    decimal places) counts as no price, as the catalog not saying one.
    """
    if product is None:
        return None
    raw = product.get("price")
    if raw is None:  # absent or null: a catalog that says `precio` instead
        raw = product.get("precio")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        # str() first: a JSON 9.95 arrives as a float, and Decimal(9.95) is not 9.95.
        price = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0 or price >= MAX_PRICE:
        return None
    places = _decimal_places(price)
    if places > MAX_PRICE_PLACES:
        return None
    # Only trailing zeros go (or cents are added): "9.5000" and "9.5" are both 9.50. A
    # negative zero ("-0") passed the sign check above; it is sold as a plain zero.
    return price.copy_abs().quantize(Decimal(1).scaleb(-max(places, 2)), context=_EXACT)


def _decimal_places(amount: Decimal) -> int:
    """Decimal places that matter: those of 9.50 and 9.5 are 1, those of 1E+3 are 0."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    places = -exponent
    for digit in reversed(digits):
        if places <= 0 or digit != 0:
            break
        places -= 1
    return max(places, 0)


def subtotal(price: Decimal | None, quantity: int) -> Decimal | None:
    """Price times quantity, exactly; None without a price."""
    if price is None:
        return None
    return _EXACT.multiply(price, Decimal(quantity))


def money(amount: Decimal | None) -> str | None:
    """At least two decimals (`9.5` → `"9.50"`), more when the catalog gives more."""
    if amount is None:
        return None
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(CENT, context=_EXACT)
    return f"{amount:f}"


def total(subtotals: Iterable[Decimal | None]) -> Decimal | None:
    """The exact sum, or None when any line has no price."""
    amount = Decimal(0)
    for line in subtotals:
        if line is None:
            return None
        amount = _EXACT.add(amount, line)
    return amount
