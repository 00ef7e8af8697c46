"""Plain writes racing on one row: without a precondition the last writer wins, never a 412."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from app.core.database import Database
from tests.support.factories import ledger_sum, quantity_of

ROUNDS = 40


async def test_plain_puts_and_deletes_of_one_product_never_answer_412(
    client: httpx.AsyncClient, db: Database
) -> None:
    async def put(quantity: int) -> int:
        response = await client.put("/inventory/hot", json={"quantity": quantity})
        return response.status_code

    async def delete() -> int:
        return (await client.delete("/inventory/hot")).status_code

    statuses: Counter[int] = Counter()
    async with asyncio.timeout(120):
        for round_number in range(ROUNDS):
            writes = [put(round_number * 10 + n) for n in range(4)] + [delete(), delete()]
            statuses.update(await asyncio.gather(*writes))

    assert set(statuses) <= {200, 201, 204, 404}, statuses
    assert statuses[200] + statuses[201] == 4 * ROUNDS
    assert statuses[204] + statuses[404] == 2 * ROUNDS
    assert await ledger_sum(db, "hot") == (await quantity_of(db, "hot") or 0)
