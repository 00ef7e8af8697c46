"""The outbox and its feed: what each change writes, in which order, and nothing for a
rollback; low-stock thresholds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, update

from app.core.database import Database
from app.models import Reservation, ReservationLine
from app.models.base import utcnow
from app.services.expiry import sweep
from tests.support.factories import make_stock
from tests.support.feed import caught_up


async def feed(client: httpx.AsyncClient, db: Database, **params: Any) -> list[dict[str, Any]]:
    """Every event committed so far, paging with `after` as a consumer does."""
    await caught_up(db)
    seen: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = params | ({"after": after} if after else {}) | {"limit": 3}
        response = await client.get("/events", params=query)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if not items:
            return seen
        seen += items
        after = items[-1]["id"]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def test_a_purchase_writes_its_events_in_the_order_they_happened(
    client: httpx.AsyncClient, db: Database
) -> None:
    put = await client.put("/inventory/42", json={"quantity": 6, "low_stock_threshold": 5})
    assert put.json()["low_stock_threshold"] == 5
    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "42", "quantity": 2}]}
    )
    assert bought.status_code == 201

    events = await feed(client, db)
    assert types(events) == [
        "stock.changed",
        "stock.restocked",
        "stock.changed",
        "stock.low",
        "purchase.completed",
    ]
    ids = [event["id"] for event in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    [movement] = (await client.get("/inventory/42/movements", params={"limit": 1})).json()["items"]
    assert events[2]["data"] == movement
    assert events[3]["data"] == {"product_id": "42", "quantity": 4, "low_stock_threshold": 5}
    assert events[4]["data"] == bought.json()
    assert events[1]["data"] == {"product_id": "42", "quantity": 6, "available": 6}


async def test_a_change_that_fails_writes_no_event(client: httpx.AsyncClient, db: Database) -> None:
    await client.put("/inventory/1", json={"quantity": 1})
    before = await feed(client, db)
    short = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "1", "quantity": 2}]}
    )
    assert short.status_code == 409
    assert (
        await client.post("/inventory/1/adjustments", json={"delta": -5, "reason": "x"})
    ).status_code == 409
    assert await feed(client, db) == before


async def test_stock_low_is_sent_once_per_crossing(client: httpx.AsyncClient, db: Database) -> None:
    await client.put("/inventory/9", json={"quantity": 10, "low_stock_threshold": 5})
    for delta in (-5, -1, 6, -2, -8):
        response = await client.post(
            "/inventory/9/adjustments", json={"delta": delta, "reason": "r"}
        )
        assert response.status_code == 200, response.text
    lows = [e["data"]["quantity"] for e in await feed(client, db, type="stock.low")]
    # 10 → 5 crosses, 5 → 4 does not, 4 → 10 → 8 does not, 8 → 0 crosses again.
    assert lows == [5, 0]
    assert [e["data"]["quantity"] for e in await feed(client, db, type="stock.depleted")] == [0]
    assert [e["data"]["quantity"] for e in await feed(client, db, type="stock.restocked")] == [10]


async def test_cancelling_writes_the_cancelled_receipt(
    client: httpx.AsyncClient, db: Database
) -> None:
    await client.put("/inventory/3", json={"quantity": 2})
    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "3", "quantity": 2}]}
    )
    cancelled = await client.post(f"/inventory/purchases/{bought.json()['id']}/cancel")
    await client.post(f"/inventory/purchases/{bought.json()['id']}/cancel")
    [event] = await feed(client, db, type="purchase.cancelled")
    assert event["data"] == cancelled.json()
    assert event["data"]["status"] == "cancelled"


async def test_threshold_is_kept_when_omitted_and_cleared_with_null(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/inventory/a", json={"quantity": 3, "low_stock_threshold": 4})
    await client.put("/inventory/b", json={"quantity": 9, "low_stock_threshold": 4})
    await client.put("/inventory/c", json={"quantity": 0})
    kept = await client.put("/inventory/a", json={"quantity": 2})
    assert kept.json()["low_stock_threshold"] == 4
    low = await client.get("/inventory", params={"low_stock": "true"})
    assert [s["product_id"] for s in low.json()["items"]] == ["a"]
    others = await client.get("/inventory", params={"low_stock": "false"})
    assert [s["product_id"] for s in others.json()["items"]] == ["b", "c"]
    cleared = await client.put("/inventory/a", json={"quantity": 2, "low_stock_threshold": None})
    assert cleared.json()["low_stock_threshold"] is None
    assert (await client.get("/inventory", params={"low_stock": "true"})).json()["items"] == []


@pytest.mark.parametrize("threshold", [-1, 1.5, "3", 1_000_000_001])
async def test_a_bad_threshold_is_422(client: httpx.AsyncClient, threshold: object) -> None:
    response = await client.put(
        "/inventory/a", json={"quantity": 3, "low_stock_threshold": threshold}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "low_stock_threshold"


async def test_the_feed_filters_by_type_and_refuses_foreign_positions(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "5", 1)
    assert types(await feed(client, db, type="stock.changed")) == ["stock.changed"]
    for params in ({"after": "42"}, {"after": "evt_x"}, {"type": "nope"}, {"limit": 501}):
        response = await client.get("/events", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/events", "/webhooks", "/webhooks/x/deliveries"])
async def test_events_and_webhooks_need_the_key(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "ApiKey"


async def test_a_bulk_import_writes_its_events(client: httpx.AsyncClient, db: Database) -> None:
    from app.services.bulk import import_stock, parse_import
    from tests.support.factories import TEST_CALLER

    rows = parse_import(["product_id,quantity", "x,1", "y,0"])
    await import_stock(db, TEST_CALLER, rows, batch_size=100)
    events = await feed(client, db, type="stock.changed")
    assert [e["data"]["product_id"] for e in events] == ["x", "y"]


async def test_reservations_write_created_confirmed_released_and_expired(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 10)
    hold = {"items": [{"product_id": "7", "quantity": 1}], "ttl_seconds": 60}
    confirmed = (await client.post("/reservations", json=hold)).json()
    released = (await client.post("/reservations", json=hold)).json()
    expiring = (await client.post("/reservations", json=hold)).json()
    receipt = await client.post(f"/reservations/{confirmed['id']}/confirm")
    await client.post(f"/reservations/{released['id']}/release")
    await db.write(
        lambda c: c.execute(
            update(Reservation)
            .where(Reservation.id == expiring["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )
    await sweep(db)

    events = [
        e for e in await feed(client, db) if e["type"].startswith(("reservation.", "purchase."))
    ]
    assert [(e["type"], e["data"]["id"]) for e in events] == [
        ("reservation.created", confirmed["id"]),
        ("reservation.created", released["id"]),
        ("reservation.created", expiring["id"]),
        ("purchase.completed", receipt.json()["id"]),
        ("reservation.confirmed", confirmed["id"]),
        ("reservation.released", released["id"]),
        ("reservation.expired", expiring["id"]),
    ]
    assert events[0]["data"] == confirmed
    assert events[4]["data"]["status"] == "confirmed"
    assert events[4]["data"]["purchase_id"] == receipt.json()["id"]
    assert events[5]["data"]["status"] == "released"
    assert events[6]["data"]["status"] == "expired"


async def test_a_hold_of_the_last_units_depletes_and_its_release_restocks(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 2)
    held = await client.post("/reservations", json={"items": [{"product_id": "7", "quantity": 2}]})
    await client.post(f"/reservations/{held.json()['id']}/release")

    events = [
        e for e in await feed(client, db) if e["type"] in ("stock.depleted", "stock.restocked")
    ]
    assert [(e["type"], e["data"]) for e in events] == [
        ("stock.restocked", {"product_id": "7", "quantity": 2, "available": 2}),
        ("stock.depleted", {"product_id": "7", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "7", "quantity": 2, "available": 2}),
    ]


async def test_confirming_a_hold_that_already_depleted_writes_no_second_depleted(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 2)
    held = await client.post("/reservations", json={"items": [{"product_id": "7", "quantity": 2}]})
    confirmed = await client.post(f"/reservations/{held.json()['id']}/confirm")
    assert confirmed.status_code == 201, confirmed.text

    events = [
        e for e in await feed(client, db) if e["type"] in ("stock.depleted", "stock.restocked")
    ]
    assert [(e["type"], e["data"]) for e in events] == [
        ("stock.restocked", {"product_id": "7", "quantity": 2, "available": 2}),
        ("stock.depleted", {"product_id": "7", "quantity": 2, "available": 0}),
    ]


async def availability(client: httpx.AsyncClient, db: Database) -> list[tuple[str, Any]]:
    """The `stock.depleted` and `stock.restocked` events so far, with their data."""
    return [
        (e["type"], e["data"])
        for e in await feed(client, db)
        if e["type"] in ("stock.depleted", "stock.restocked")
    ]


async def hold(client: httpx.AsyncClient, product_id: str, quantity: int) -> str:
    items = [{"product_id": product_id, "quantity": quantity}]
    held = await client.post("/reservations", json={"items": items})
    assert held.status_code == 201, held.text
    reservation_id: str = held.json()["id"]
    return reservation_id


async def test_a_purchase_of_what_is_not_held_depletes(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "8", 5)
    await hold(client, "8", 2)
    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "8", "quantity": 3}]}
    )
    assert bought.status_code == 201, bought.text

    assert await availability(client, db) == [
        ("stock.restocked", {"product_id": "8", "quantity": 5, "available": 5}),
        ("stock.depleted", {"product_id": "8", "quantity": 2, "available": 0}),
    ]


async def test_an_adjustment_counts_the_held_units(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "9", 5)
    await hold(client, "9", 2)
    for delta in (-3, 1):
        adjusted = await client.post(
            "/inventory/9/adjustments", json={"delta": delta, "reason": "x"}
        )
        assert adjusted.status_code == 200, adjusted.text

    assert await availability(client, db) == [
        ("stock.restocked", {"product_id": "9", "quantity": 5, "available": 5}),
        ("stock.depleted", {"product_id": "9", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "9", "quantity": 3, "available": 1}),
    ]


async def test_a_release_after_the_rest_was_sold_restocks(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "10", 5)
    reservation_id = await hold(client, "10", 2)
    await client.post("/inventory/purchase", json={"items": [{"product_id": "10", "quantity": 3}]})
    released = await client.post(f"/reservations/{reservation_id}/release")
    assert released.status_code == 200, released.text

    assert (await availability(client, db))[1:] == [
        ("stock.depleted", {"product_id": "10", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "10", "quantity": 2, "available": 2}),
    ]


async def test_a_put_and_a_cancel_restock_with_what_is_not_held(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "11", 5)
    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "11", "quantity": 3}]}
    )
    await hold(client, "11", 2)
    cancelled = await client.post(f"/inventory/purchases/{bought.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    await client.put("/inventory/11", json={"quantity": 2})
    await client.put("/inventory/11", json={"quantity": 4})

    assert (await availability(client, db))[1:] == [
        ("stock.depleted", {"product_id": "11", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "11", "quantity": 5, "available": 3}),
        ("stock.depleted", {"product_id": "11", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "11", "quantity": 4, "available": 2}),
    ]


async def expire_unswept(db: Database, reservation_id: str) -> None:
    """The reservation's expiry passes, and no sweep lets go of its holds."""
    past = utcnow() - timedelta(seconds=1)

    def unit(connection: Connection) -> None:
        connection.execute(
            update(Reservation).where(Reservation.id == reservation_id).values(expires_at=past)
        )
        connection.execute(
            update(ReservationLine)
            .where(ReservationLine.reservation_id == reservation_id)
            .values(expires_at=past)
        )

    await db.write(unit)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/inventory/purchase", {"items": [{"product_id": "12", "quantity": 3}]}),
        ("/inventory/12/adjustments", {"delta": -3, "reason": "x"}),
    ],
)
async def test_a_change_that_lets_go_of_an_expired_hold_restocks(
    client: httpx.AsyncClient, db: Database, path: str, body: dict[str, Any]
) -> None:
    await make_stock(db, "12", 5)
    await expire_unswept(db, await hold(client, "12", 5))
    changed = await client.post(path, json=body)
    assert changed.status_code in (200, 201), changed.text
    await sweep(db)

    assert (await availability(client, db))[1:] == [
        ("stock.depleted", {"product_id": "12", "quantity": 5, "available": 0}),
        ("stock.restocked", {"product_id": "12", "quantity": 2, "available": 2}),
    ]


async def test_a_cancel_lets_go_of_an_expired_hold(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "13", 5)
    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "13", "quantity": 3}]}
    )
    await expire_unswept(db, await hold(client, "13", 2))
    cancelled = await client.post(f"/inventory/purchases/{bought.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    await sweep(db)

    assert (await availability(client, db))[1:] == [
        ("stock.depleted", {"product_id": "13", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "13", "quantity": 5, "available": 5}),
    ]


async def test_a_bulk_import_counts_the_held_units(client: httpx.AsyncClient, db: Database) -> None:
    from app.services.bulk import import_stock, parse_import
    from tests.support.factories import TEST_CALLER

    await make_stock(db, "14", 5)
    await hold(client, "14", 2)
    for quantity in (2, 4):
        rows = parse_import(["product_id,quantity", f"14,{quantity}"])
        await import_stock(db, TEST_CALLER, rows, batch_size=100)

    assert (await availability(client, db))[1:] == [
        ("stock.depleted", {"product_id": "14", "quantity": 2, "available": 0}),
        ("stock.restocked", {"product_id": "14", "quantity": 4, "available": 2}),
    ]
