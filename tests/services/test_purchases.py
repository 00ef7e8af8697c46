from __future__ import annotations

from decimal import Decimal

import pytest

from app.clients.products import StandaloneCatalog
from app.core.database import Database
from app.core.errors import DatabaseUnavailable
from app.schemas.purchases import PurchaseIn
from app.services import purchases
from app.services.pricing import money, total, unit_price
from tests.support.factories import TEST_CALLER, make_stock, snapshot
from tests.support.statements import InjectedFailure, watched


def _buy(*lines: tuple[str, int]) -> PurchaseIn:
    return PurchaseIn.model_validate(
        {"items": [{"product_id": p, "quantity": q} for p, q in lines]}
    )


async def test_a_failure_at_any_statement_after_the_first_decrement_leaves_everything_as_before(
    db: Database,
) -> None:
    for product_id in ("a", "b", "c", "x", "y", "z"):
        await make_stock(db, product_id, 5)
    with watched() as statements:
        statements.arm()
        await purchases.buy(
            db, StandaloneCatalog(), TEST_CALLER, order=_buy(("z", 1), ("x", 1), ("y", 1))
        )
        sent = len(statements.sent)
        after_decrement = statements.after_first("UPDATE stock_levels")
        assert after_decrement[-1] == "COMMIT"
        before = await snapshot(db)

        for fail_at in range(sent - len(after_decrement) + 1, sent + 1):
            statements.arm(fail_at)
            with pytest.raises((InjectedFailure, DatabaseUnavailable)):
                await purchases.buy(
                    db, StandaloneCatalog(), TEST_CALLER, order=_buy(("c", 1), ("a", 1), ("b", 1))
                )
            assert await snapshot(db) == before, statements.sent[-1]


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
