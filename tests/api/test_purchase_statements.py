"""What a purchase costs the database: statements on SQLite, and on PostgreSQL the round trips
made while the stock row it takes from is locked."""

from __future__ import annotations

import httpx

from app.core.database import Database
from tests.support.factories import make_stock
from tests.support.feed import caught_up
from tests.support.orders import order
from tests.support.statements import watched


async def test_a_one_line_purchase_locks_its_stock_row_for_one_statement(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "hot", 10)
    with watched() as statements:
        statements.arm()
        response = await client.post("/inventory/purchase", json=order(("hot", 1)))

    assert response.status_code == 201
    after_decrement = statements.after_first("UPDATE stock_levels")
    if db.is_sqlite:
        # BEGIN IMMEDIATE, the purchase, expired holds, the decrement, the line, the
        # movement, the events, COMMIT.
        unit = statements.on_connection_of("UPDATE stock_levels")
        assert len(unit) <= 8, unit
    else:
        assert after_decrement == ["COMMIT"], statements.sent


async def test_a_purchase_reads_nothing_back_and_writes_its_events_in_one_statement(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 3)
    await client.put("/inventory/b", json={"quantity": 5, "low_stock_threshold": 4})
    await caught_up(db)
    before = (await client.get("/events")).json()["items"]
    with watched() as statements:
        statements.arm()
        response = await client.post("/inventory/purchase", json=order(("b", 2), ("a", 3)))

    assert response.status_code == 201
    unit = statements.on_connection_of("INTO events")
    assert len([sent for sent in unit if "INTO events" in sent]) == 1
    assert not [sent for sent in unit if sent.lstrip().startswith("SELECT")]
    await caught_up(db)
    feed = (await client.get("/events")).json()["items"][len(before) :]
    assert [(event["type"], event["data"].get("product_id")) for event in feed] == [
        ("stock.changed", "b"),
        ("stock.low", "b"),
        ("stock.changed", "a"),
        ("stock.depleted", "a"),
        ("purchase.completed", None),
    ]
    assert feed[1]["data"] == {"product_id": "b", "quantity": 3, "low_stock_threshold": 4}
    assert feed[-1]["data"] == response.json()


async def test_events_written_by_the_purchase_statement_read_as_the_receipt_and_ledger(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Text the statement fills in (a `%` in a reference, non-ASCII) reads back unchanged."""
    await make_stock(db, "a", 4)
    await caught_up(db)
    before = (await client.get("/events")).json()["items"]

    response = await client.post(
        "/inventory/purchase", json=order(("a", 1), reference="50% off, %s %1$s ünï")
    )

    assert response.status_code == 201
    await caught_up(db)
    changed, completed = (await client.get("/events")).json()["items"][len(before) :]
    assert completed["data"] == response.json()
    movement = (await client.get("/inventory/a/movements")).json()["items"][0]
    assert changed["data"] == {**movement, "reason": "50% off, %s %1$s ünï"}
