"""Hostile and malformed input: each gets a clear 4xx problem and changes nothing."""

from __future__ import annotations

import httpx

from app.core.database import Database
from tests.api.test_stock import assert_problem
from tests.factories import ledger_sum, make_stock, quantity_of


async def assert_unchanged(db: Database, product_id: str = "7", quantity: int = 3) -> None:
    assert await quantity_of(db, product_id) == quantity
    assert await ledger_sum(db, product_id) == quantity


async def test_body_that_is_not_utf8_is_422_validation_error(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)

    response = await client.post(
        "/inventory/7/adjustments",
        content=b'{"delta": 1, "reason": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )

    assert_problem(response, 422, "validation-error")
    await assert_unchanged(db)
