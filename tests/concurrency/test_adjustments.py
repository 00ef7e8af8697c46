"""Many writers on one row: exactly as many succeed as there is stock, on every engine."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from app.core.database import Database
from tests.support.factories import ledger_sum, make_stock, quantity_of


async def test_fifty_concurrent_decrements_of_thirty_units(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "hot", 30)

    async def take_one() -> int:
        response = await client.post(
            "/inventory/hot/adjustments", json={"delta": -1, "reason": "race"}
        )
        return response.status_code

    statuses = Counter(await asyncio.gather(*(take_one() for _ in range(50))))

    assert statuses == {200: 30, 409: 20}
    assert await quantity_of(db, "hot") == 0
    assert await ledger_sum(db, "hot") == 0
