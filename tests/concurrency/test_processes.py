"""Several OS processes sell from one database over real HTTP: never more than there was."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from app.core.database import Database
from devtools.invariants import broken_invariants
from devtools.servers import running_service
from tests.support.factories import ledger_sum, make_stock, quantity_of, sold

# Left out of `make test-fast`: several processes, a crash, or generated cases.
pytestmark = pytest.mark.slow


async def test_three_workers_sell_exactly_the_stock(database_url: str) -> None:
    db = Database(database_url)
    try:
        await make_stock(db, "hot", 100)
        await make_stock(db, "warm", 40)
        with running_service(database_url, workers=3) as base_url:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:

                async def buy(i: int) -> int:
                    items = [{"product_id": "hot", "quantity": 1}]
                    if i % 4 == 0:
                        items.append({"product_id": "warm", "quantity": 1})
                    # A careful client: on a dropped connection it retries with its key,
                    # which must never sell twice.
                    headers = {"Idempotency-Key": f"buyer-{i}"}
                    for _ in range(5):
                        try:
                            response = await http.post(
                                "/inventory/purchase", json={"items": items}, headers=headers
                            )
                        except httpx.TransportError:
                            continue
                        if response.status_code != 409 or "in-use" not in response.text:
                            return response.status_code
                        await asyncio.sleep(0.1)
                    raise AssertionError(f"buyer {i} never got an answer")

                statuses = Counter(await asyncio.gather(*(buy(i) for i in range(200))))

        assert statuses[201] == 100
        assert statuses[409] == 100
        assert sum(statuses.values()) == 200
        assert await quantity_of(db, "hot") == 0
        assert await sold(db, "hot") == 100
        assert await quantity_of(db, "warm") == 40 - await sold(db, "warm")
        assert await ledger_sum(db, "hot") == 0
        assert await ledger_sum(db, "warm") == await quantity_of(db, "warm")
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()
