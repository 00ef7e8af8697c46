from __future__ import annotations

from decimal import Decimal

import pytest

from app.clients.products import StandaloneCatalog
from app.core.database import Database
from app.schemas.purchases import PurchaseIn
from app.services import purchases
from app.services.pricing import money, total, unit_price
from tests.support.factories import TEST_CALLER, make_stock, snapshot


class Boom(RuntimeError):
    pass


async def test_a_failure_after_the_first_line_leaves_everything_as_before(db: Database) -> None:
    for product_id in ("a", "b", "c"):
        await make_stock(db, product_id, 5)
    before = await snapshot(db)
    taken: list[str] = []

    def fail_after_first_line(product_id: str) -> None:
        taken.append(product_id)
        raise Boom("injected after the first decrement")

    with pytest.raises(Boom):
        await purchases.buy(
            db,
            StandaloneCatalog(),
            TEST_CALLER,
            order=PurchaseIn.model_validate(
                {"items": [{"product_id": p, "quantity": 1} for p in ("c", "a", "b")]}
            ),
            after_line=fail_after_first_line,
        )

    assert taken == ["a"]
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ({"price": 9.5}, Decimal("9.5")),
        ({"price": "19.90"}, Decimal("19.90")),
        ({"precio": 3}, Decimal("3")),
        ({"price": 0.1}, Decimal("0.1")),
        ({"price": -1}, None),
        ({"price": True}, None),
        ({"price": "NaN"}, None),
        ({"price": "cheap"}, None),
        ({"price": None}, None),
        ({}, None),
        (None, None),
    ],
)
def test_unit_price_reads_price_or_precio(
    product: dict[str, object] | None, expected: Decimal | None
) -> None:
    assert unit_price(product) == expected


@pytest.mark.parametrize(
    ("amount", "text"),
    [(Decimal("9.5"), "9.50"), (Decimal("3"), "3.00"), (Decimal("0.125"), "0.125"), (None, None)],
)
def test_money_has_at_least_two_decimals(amount: Decimal | None, text: str | None) -> None:
    assert money(amount) == text


def test_total_is_exact_and_null_when_a_price_is_missing() -> None:
    assert total([Decimal("0.1")] * 3) == Decimal("0.3")
    assert total([Decimal("1"), None]) is None


def test_duplicate_lines_are_summed_in_order_of_first_appearance() -> None:
    order = PurchaseIn.model_validate(
        {
            "items": [
                {"product_id": "b", "quantity": 1},
                {"product_id": 7, "quantity": 2},
                {"product_id": "b", "quantity": 3},
            ]
        }
    )
    assert purchases.merge_lines(order.items) == {"b": 4, "7": 2}
