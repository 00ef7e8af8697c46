"""One writer per process: group commit on SQLite, units that fail alone, commits that fail
whole, a loop that never waits for SQLite's lock, and callers that hang up losing nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, text

from app.core.database import Database, Unit
from app.core.errors import DatabaseUnavailable, InsufficientStock
from app.models.base import utcnow
from app.repositories import stock_levels
from devtools import databases
from devtools.invariants import broken_invariants, units_sold
from tests.support.factories import make_stock, quantity_of, snapshot
from tests.support.orders import order
from tests.support.service import API_KEY, client_for, make_settings

# What "the loop answered at once" means on a busy 2-core machine.
PROMPT_SECONDS = 0.5
HOLD_SECONDS = 2.0
DEADLINE_SECONDS = 10.0


@pytest.fixture
async def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Database:
    return Database(databases.fresh_sqlite(sqlite_template, tmp_path))


def _take_one(product_id: str) -> Unit[object]:
    def unit(connection: Connection) -> int:
        left = stock_levels.take(connection, product_id, 1, utcnow())
        if left is None:
            raise InsufficientStock(f"{product_id} is out of stock")
        return left.quantity

    return unit


async def _while_the_writer_is_held(db: Database, then: list[Unit[object]]) -> list[object]:
    """Hold the writer in a unit until every unit of `then` has queued, so that they form
    one batch; their outcomes."""
    entered, release = threading.Event(), threading.Event()

    def hold(_connection: Connection) -> None:
        entered.set()
        release.wait(timeout=DEADLINE_SECONDS)

    holder = asyncio.ensure_future(db.write(hold))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not entered.is_set():
        assert time.monotonic() < deadline, "the writer never ran the holding unit"
        await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(db.write(unit)) for unit in then]
    await asyncio.sleep(0)  # each has handed its unit to the writer's queue
    release.set()
    await holder
    return await asyncio.gather(*queued, return_exceptions=True)


async def test_units_queued_while_a_batch_commits_commit_together_and_a_409_fails_alone(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    try:
        await make_stock(db, "a", 5)
        await make_stock(db, "empty", 0)
        assert db.writer is not None
        batches_before = db.writer.batches

        outcomes = await _while_the_writer_is_held(
            db, [_take_one("a"), _take_one("empty"), _take_one("a")]
        )

        assert outcomes[0] == 4
        assert isinstance(outcomes[1], InsufficientStock)
        assert outcomes[2] == 3
        # The holder's batch, then one batch for the three that queued behind it.
        assert db.writer.batches == batches_before + 2
        assert await quantity_of(db, "a") == 3
        assert await quantity_of(db, "empty") == 0
    finally:
        await db.dispose()


async def test_a_failed_commit_fails_every_unit_of_its_batch_with_503_and_keeps_nothing(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    try:
        await make_stock(db, "a", 5)
        before = await snapshot(db)

        def commit_will_fail(connection: Connection) -> None:
            # A foreign key checked only at COMMIT, and broken: SQLite refuses the COMMIT.
            connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            connection.execute(
                text(
                    "INSERT INTO purchase_lines (purchase_id, product_id, position, quantity,"
                    " remaining) VALUES ('no-such-purchase', 'a', 0, 1, 0)"
                )
            )

        outcomes = await _while_the_writer_is_held(db, [_take_one("a"), commit_will_fail])

        assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes), outcomes
        assert await snapshot(db) == before
        assert await db.write(_take_one("a")) == 4  # the writer goes on
    finally:
        await db.dispose()


async def test_the_loop_never_waits_for_another_process_holding_the_write_lock(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = databases.fresh_sqlite(sqlite_template, tmp_path)
    app = _app(url)
    async with app.router.lifespan_context(app), client_for(app, **{"X-API-KEY": API_KEY}) as http:
        await make_stock(app.state.database, "a", 5)
        outsider = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            outsider.execute("BEGIN IMMEDIATE")
            write = asyncio.ensure_future(http.post("/inventory/a/adjustments", json=_delta()))
            slowest = 0.0
            held_until = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < held_until:
                for path in ("/health", "/inventory/a"):
                    started = time.monotonic()
                    answer = await http.get(path)
                    slowest = max(slowest, time.monotonic() - started)
                    assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.05)
            assert not write.done()
        finally:
            outsider.execute("ROLLBACK")
            outsider.close()
        written = await write

    assert slowest < PROMPT_SECONDS, f"a read waited {slowest:.2f}s behind the write lock"
    assert written.status_code == 200, written.text
    assert written.json()["quantity"] == 6


def _app(database_url: str) -> FastAPI:
    from app.main import create_app

    return create_app(make_settings(database_url))


def _delta() -> dict[str, object]:
    return {"delta": 1, "reason": "delivery"}


HANGING_UP = 40
STOCK = 25


async def test_buyers_hanging_up_mid_purchase_lose_nothing_and_the_books_balance(
    database_url: str,
) -> None:
    app = _app(database_url)
    async with app.router.lifespan_context(app):
        db: Database = app.state.database
        await make_stock(db, "hot", STOCK)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"X-API-KEY": API_KEY}
        ) as http:
            buyers = [
                asyncio.ensure_future(http.post("/inventory/purchase", json=order(("hot", 1))))
                for _ in range(HANGING_UP)
            ]
            # Every other buyer hangs up at a different moment of its request.
            for index, buyer in enumerate(buyers):
                if index % 2:
                    await asyncio.sleep(0.001 * (index % 7))
                    buyer.cancel()
            answers = await asyncio.gather(*buyers, return_exceptions=True)
    # The lifespan ended: every unit under way has finished, committed or not.
    db = Database(database_url)
    try:
        left = await quantity_of(db, "hot")
        sold = (await units_sold(db)).get("hot", 0)
        problems = await broken_invariants(db)
    finally:
        await db.dispose()

    statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
    assert set(statuses) <= {201, 409}, statuses
    assert left is not None
    assert left + sold == STOCK
    assert left >= 0
    assert sold >= statuses.count(201)
    assert problems == []
