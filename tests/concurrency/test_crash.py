"""SIGKILL the whole server under purchase load, restart it, and lose or duplicate nothing."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.database import Database
from app.models import Purchase
from devtools.invariants import broken_invariants, units_sold
from devtools.servers import free_port, kill_service, start_service, stop_service
from tests.support.factories import make_stock, quantity_of

# Left out of `make test-fast`: several processes, a crash, or generated cases.
pytestmark = pytest.mark.slow

PRODUCTS = {f"p{i}": 300 for i in range(5)}
# Claims of requests cut off by the crash are taken over after this lease.
ENV = {"IDEMPOTENCY_LEASE_SECONDS": "2"}


def purchase(n: int) -> tuple[str, dict[str, Any]]:
    names = list(PRODUCTS)
    items = [{"product_id": names[n % 5], "quantity": 1 + n % 3}]
    if n % 2:
        items.append({"product_id": names[(n + 2) % 5], "quantity": 1})
    return f"order-{n}", {"items": items}


async def settle(http: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    """Send until the service gives a final answer, as a careful client retries."""
    for _ in range(100):
        try:
            response = await http.post(
                "/inventory/purchase", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        if response.status_code in (201, 409) and "idempotency-key-in-use" not in response.text:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError(f"{key} never got a final answer")


async def test_a_killed_server_loses_and_duplicates_nothing(database_url: str) -> None:
    db = Database(database_url)
    try:
        for product_id, quantity in PRODUCTS.items():
            await make_stock(db, product_id, quantity)
        answered: dict[str, httpx.Response] = {}
        interrupted: list[int] = []
        port = free_port()
        server, base_url = start_service(database_url, workers=2, env=ENV, port=port)
        numbers = itertools.count()
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                sixty_answered = asyncio.Event()

                async def buyer() -> None:
                    while len(answered) < 150:
                        n = next(numbers)
                        key, body = purchase(n)
                        try:
                            response = await http.post(
                                "/inventory/purchase", json=body, headers={"Idempotency-Key": key}
                            )
                        except httpx.TransportError:
                            interrupted.append(n)
                            return
                        answered[key] = response
                        if len(answered) >= 60:
                            sixty_answered.set()

                buyers = [asyncio.create_task(buyer()) for _ in range(16)]
                await sixty_answered.wait()
                kill_service(server)
                await asyncio.gather(*buyers)
        finally:
            kill_service(server)

        server, base_url = start_service(database_url, workers=2, env=ENV, port=port)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                retried = await asyncio.gather(*(settle(http, *purchase(n)) for n in interrupted))
                replays = await asyncio.gather(
                    *(
                        settle(http, key, purchase(int(key.split("-")[1]))[1])
                        for key, response in answered.items()
                        if response.status_code == 201
                    )
                )
        finally:
            stop_service(server)

        assert interrupted, "the crash interrupted no request: the test proved nothing"
        created = [r for r in answered.values() if r.status_code == 201]
        assert {r.status_code for r in answered.values()} <= {201, 409}
        # Every purchase answered 201 is stored, and a retry of it replays the same receipt.
        assert [r.json() for r in replays] == [r.json() for r in created]
        ids = {r.json()["id"] for r in created} | {
            r.json()["id"] for r in retried if r.status_code == 201
        }
        stored = await db.read(lambda c: c.scalars(select(Purchase.id)).all())
        assert set(stored) == ids
        sold = await units_sold(db)
        for product_id, initial in PRODUCTS.items():
            left = await quantity_of(db, product_id)
            assert left is not None
            assert left + sold.get(product_id, 0) == initial
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()
