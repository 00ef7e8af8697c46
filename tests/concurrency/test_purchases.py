"""Races on purchases, in one process: never oversold, never deadlocked, never twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from app.core.database import Database
from devtools.invariants import broken_invariants
from tests.support.factories import ledger_sum, make_stock, quantity_of, sold
from tests.support.orders import order


async def test_two_hundred_buyers_of_one_unit_against_stock_of_one_hundred(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "hot", 100)

    async def buy() -> int:
        response = await client.post("/inventory/purchase", json=order(("hot", 1)))
        return response.status_code

    statuses = Counter(await asyncio.gather(*(buy() for _ in range(200))))

    assert statuses == {201: 100, 409: 100}
    assert await quantity_of(db, "hot") == 0
    assert await sold(db, "hot") == 100
    assert await ledger_sum(db, "hot") == 0
    assert await broken_invariants(db) == []


async def test_purchases_sharing_products_in_opposite_orders_do_not_deadlock(
    client: httpx.AsyncClient, db: Database
) -> None:
    for product_id in ("a", "b", "c"):
        await make_stock(db, product_id, 30)
    forwards = order(("a", 1), ("b", 1), ("c", 1))
    backwards = order(("c", 1), ("b", 1), ("a", 1))

    async def buy(body: dict[str, object]) -> int:
        return (await client.post("/inventory/purchase", json=body)).status_code

    statuses = Counter(
        await asyncio.gather(*(buy(forwards if i % 2 else backwards) for i in range(40)))
    )

    assert statuses == {201: 30, 409: 10}
    for product_id in ("a", "b", "c"):
        assert await quantity_of(db, product_id) == 0
        assert await ledger_sum(db, product_id) == 0
    assert await broken_invariants(db) == []


async def test_twenty_concurrent_requests_with_one_key_make_one_purchase(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 50)
    headers = {"Idempotency-Key": "same-key"}

    async def buy() -> httpx.Response:
        return await client.post("/inventory/purchase", json=order(("a", 1)), headers=headers)

    responses = await asyncio.gather(*(buy() for _ in range(20)))
    statuses = Counter(response.status_code for response in responses)
    replay = await buy()

    assert set(statuses) <= {201, 409}
    created = [r for r in responses if r.status_code == 201]
    assert {r.json()["id"] for r in created} == {replay.json()["id"]}
    assert all(
        r.json()["type"] == "/problems/idempotency-key-in-use"
        for r in responses
        if r.status_code == 409
    )
    assert replay.status_code == 201
    assert replay.json() == created[0].json()
    assert await quantity_of(db, "a") == 49
    assert await sold(db, "a") == 1
