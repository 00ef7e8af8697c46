"""Holds racing each other, purchases, confirmations and releases: `reserved` never exceeds
`quantity`, and every unit is held, sold or free exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from app.clients.products import StandaloneCatalog
from app.core.database import Database
from app.core.errors import InsufficientStock, ReservationNotActive
from app.repositories import stock_levels
from app.schemas.purchases import PurchaseIn, PurchaseItemIn
from app.schemas.reservations import ReservationIn
from app.services import expiry, purchases, reservations
from devtools.invariants import broken_invariants, units_sold
from devtools.servers import running_service
from tests.support.factories import TEST_CALLER, make_stock, quantity_of

ONE = [PurchaseItemIn(product_id="hot", quantity=1)]
TTL = timedelta(minutes=10)


@pytest.fixture
def db(database_url: str) -> Database:
    """A database with no background sweeper: only requests and explicit sweeps run."""
    return Database(database_url)


async def _hold(db: Database, ttl: timedelta = TTL) -> str | None:
    try:
        held = await reservations.hold(
            db, StandaloneCatalog(), TEST_CALLER, order=ReservationIn(items=ONE), ttl=ttl
        )
    except InsufficientStock:
        return None
    return held.id


async def _buy(db: Database) -> bool:
    try:
        await purchases.buy(db, StandaloneCatalog(), TEST_CALLER, order=PurchaseIn(items=ONE))
    except InsufficientStock:
        return False
    return True


async def _reserved(db: Database) -> tuple[int, int]:
    level = await db.read_one(lambda c: stock_levels.find(c, "hot"))
    assert level is not None
    return level.quantity, level.reserved


async def test_200_one_unit_holds_on_100_units_hold_exactly_100(db: Database) -> None:
    try:
        await make_stock(db, "hot", 100)

        held = await asyncio.gather(*(_hold(db) for _ in range(200)))

        assert sum(h is not None for h in held) == 100
        assert await _reserved(db) == (100, 100)
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()


async def test_holds_and_purchases_racing_never_promise_a_unit_twice(db: Database) -> None:
    try:
        await make_stock(db, "hot", 60)

        outcomes = await asyncio.gather(
            *(_hold(db) if i % 2 else _buy(db) for i in range(120)), return_exceptions=False
        )

        holds = sum(1 for o in outcomes if isinstance(o, str))
        bought = sum(1 for o in outcomes if o is True)
        assert holds + bought == 60
        assert await _reserved(db) == (60 - bought, holds)
        assert await units_sold(db) == ({"hot": bought} if bought else {})
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()


async def test_confirm_and_release_racing_on_one_hold_exactly_one_wins(db: Database) -> None:
    try:
        await make_stock(db, "hot", 20)
        ids = [await _hold(db) for _ in range(20)]

        async def confirm(reservation_id: str) -> str:
            try:
                await reservations.confirm(db, TEST_CALLER, reservation_id=reservation_id)
            except ReservationNotActive:
                return "lost"
            return "confirmed"

        async def release(reservation_id: str) -> str:
            try:
                out = await reservations.release(db, TEST_CALLER, reservation_id=reservation_id)
            except ReservationNotActive:
                return "lost"
            return out.status

        results = await asyncio.gather(
            *(asyncio.gather(confirm(rid), release(rid)) for rid in ids if rid is not None)
        )

        for pair in results:
            assert sorted(pair) in (["confirmed", "lost"], ["lost", "released"]), pair
        confirmed = sum(pair[0] == "confirmed" for pair in results)
        assert await _reserved(db) == (20 - confirmed, 0)
        assert await quantity_of(db, "hot") == 20 - confirmed
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()


async def test_an_expired_hold_frees_its_units_within_a_second_with_no_request_touching_it(
    db: Database,
) -> None:
    try:
        await make_stock(db, "hot", 1)
        held = await reservations.hold(
            db,
            StandaloneCatalog(),
            TEST_CALLER,
            order=ReservationIn(items=ONE),
            ttl=timedelta(seconds=1),
        )
        assert await _reserved(db) == (1, 1)
        deadline = time.monotonic() + 1.0 + 1.0  # the TTL, then at most a second

        while await _reserved(db) != (1, 0):
            assert time.monotonic() < deadline, "the expired hold still counted"
            await asyncio.sleep(0.05)

        # Free for writers too, before any sweep: another hold takes the unit.
        assert await _hold(db) is not None
        stored = await reservations.get_reservation(db, reservation_id=held.id)
        assert stored.status == "expired"
        assert await expiry.sweep(db) == 1
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()


async def test_the_sweeper_marks_expired_holds_and_gives_their_units_back(db: Database) -> None:
    try:
        await make_stock(db, "hot", 5)
        for _ in range(3):
            await _hold(db, timedelta(seconds=1))
        await _hold(db)

        async def swept() -> int:
            return await expiry.sweep(db)

        total, deadline = 0, time.monotonic() + 5
        while total < 3:
            assert time.monotonic() < deadline, "the holds never expired"
            total += await swept()
            await asyncio.sleep(0.1)

        assert total == 3
        assert await _reserved(db) == (5, 1)
        assert await broken_invariants(db) == []
        assert await expiry.purge_ended(db, timedelta(0)) == 3
    finally:
        await db.dispose()


@pytest.mark.slow
async def test_holds_and_purchases_from_three_processes_never_promise_a_unit_twice(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        await make_stock(db, "hot", 100)
        with running_service(database_url, workers=3) as base_url:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:

                async def one(i: int) -> tuple[str, int]:
                    path = "/reservations" if i % 2 else "/inventory/purchase"
                    body = {"items": [{"product_id": "hot", "quantity": 1}]}
                    response = await http.post(path, json=body)
                    return path, response.status_code

                statuses = Counter(await asyncio.gather(*(one(i) for i in range(240))))

        held = statuses[("/reservations", 201)]
        sold = statuses[("/inventory/purchase", 201)]
        assert held + sold == 100
        assert sum(statuses.values()) == 240
        assert {status for _, status in statuses} <= {201, 409}
        assert await _reserved(db) == (100 - sold, held)
        assert await broken_invariants(db) == []
    finally:
        await db.dispose()
