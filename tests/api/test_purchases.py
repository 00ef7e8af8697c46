from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from app.core.database import Database
from app.models import ReservationLine
from app.models.base import utcnow
from tests.support.factories import (
    ledger_sum,
    make_stock,
    movement_count,
    purchase_count,
    quantity_of,
    snapshot,
)
from tests.support.orders import order
from tests.support.problems import assert_problem


async def test_purchase_takes_every_line_and_answers_201_with_location(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "42", 17)
    await make_stock(db, "7", 5)

    response = await client.post(
        "/inventory/purchase", json=order(("42", 2), (7, 1), reference="order-1001")
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/inventory/purchases/{body['id']}"
    assert body["status"] == "completed"
    assert body["reference"] == "order-1001"
    assert body["items"] == [
        {"product_id": "42", "quantity": 2, "unit_price": None, "subtotal": None, "remaining": 15},
        {"product_id": "7", "quantity": 1, "unit_price": None, "subtotal": None, "remaining": 4},
    ]
    assert body["total"] is None
    assert body["cancelled_at"] is None
    assert body["created_at"].endswith("Z")
    assert await quantity_of(db, "42") == 15
    assert await quantity_of(db, "7") == 4
    assert await ledger_sum(db, "42") == 15


async def test_the_same_product_twice_is_summed(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "42", 5)

    response = await client.post("/inventory/purchase", json=order(("42", 2), (42, 3)))

    assert response.status_code == 201
    assert response.json()["items"][0]["quantity"] == 5
    assert await quantity_of(db, "42") == 0


async def test_purchase_with_one_short_line_changes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    await make_stock(db, "b", 1)
    await make_stock(db, "c", 0)
    before = await snapshot(db)

    response = await client.post(
        "/inventory/purchase", json=order(("c", 1), ("a", 2), ("b", 3), ("none", 1))
    )

    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [
        {"product_id": "c", "requested": 1, "available": 0},
        {"product_id": "b", "requested": 3, "available": 1},
        {"product_id": "none", "requested": 1, "available": 0},
    ]
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"product_id": "a", "quantity": 1}] * 101}, "items"),
        ({"items": [{"product_id": "a", "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"product_id": "a", "quantity": 1_000_001}]}, "items.0.quantity"),
        ({"items": [{"product_id": "a", "quantity": 1.5}]}, "items.0.quantity"),
        ({"items": [{"product_id": "-a", "quantity": 1}]}, "items.0.product_id"),
        ({"items": [{"product_id": True, "quantity": 1}]}, "items.0.product_id"),
        ({"items": [{"product_id": -7, "quantity": 1}]}, "items.0.product_id"),
        ({"items": [{"product_id": "a", "quantity": 1}], "reference": "r" * 101}, "reference"),
        ({"items": [{"product_id": "a", "quantity": 1}], "reference": "nul\u0000"}, "reference"),
    ],
)
async def test_invalid_purchase_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db: Database, body: dict[str, object], field: str
) -> None:
    await make_stock(db, "a", 5)
    before = await snapshot(db)

    problem = assert_problem(
        await client.post("/inventory/purchase", json=body), 422, "validation-error"
    )

    assert field in [error["field"] for error in problem["errors"]]
    assert await snapshot(db) == before


async def test_get_purchase_returns_the_receipt(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "a", 5)
    created = (await client.post("/inventory/purchase", json=order(("a", 2)))).json()

    response = await client.get(f"/inventory/purchases/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_purchase_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/inventory/purchases/nope"), 404, "not-found")


async def test_purchase_movements_name_the_purchase(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    created = (await client.post("/inventory/purchase", json=order(("a", 2)))).json()

    newest = (await client.get("/inventory/a/movements")).json()["items"][0]

    assert newest["kind"] == "purchase"
    assert newest["delta"] == -2
    assert newest["quantity_after"] == 3
    assert newest["purchase_id"] == created["id"]


async def test_cancel_twice_restocks_once(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "a", 5)
    await make_stock(db, "b", 5)
    created = (await client.post("/inventory/purchase", json=order(("a", 2), ("b", 1)))).json()

    first = await client.post(f"/inventory/purchases/{created['id']}/cancel")
    second = await client.post(f"/inventory/purchases/{created['id']}/cancel")

    assert first.status_code == 200
    assert second.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["cancelled_at"].endswith("Z")
    assert second.json() == first.json()
    assert await quantity_of(db, "a") == 5
    assert await quantity_of(db, "b") == 5
    assert await ledger_sum(db, "a") == 5
    kinds = [m["kind"] for m in (await client.get("/inventory/a/movements")).json()["items"]]
    assert kinds == ["cancel", "purchase", "set"]


async def test_cancel_recreates_a_deleted_stock_level(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    created = (await client.post("/inventory/purchase", json=order(("a", 2)))).json()
    await client.delete("/inventory/a")

    await client.post(f"/inventory/purchases/{created['id']}/cancel")

    level = (await client.get("/inventory/a")).json()
    assert level["quantity"] == 2
    assert level["version"] == 1
    assert await ledger_sum(db, "a") == 2


async def test_cancel_unknown_purchase_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/inventory/purchases/nope/cancel"), 404, "not-found")


async def test_a_short_purchase_counts_expired_holds_as_available_and_writes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The purchase lets go of expired holds in its own unit: a refusal undoes that too."""
    await make_stock(db, "a", 5)
    await make_stock(db, "b", 5)
    held = await client.post("/reservations", json=order(("a", 3), ("b", 1)))
    assert held.status_code == 201
    await db.write(
        lambda connection: connection.execute(
            update(ReservationLine)
            .where(ReservationLine.reservation_id == held.json()["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )
    movements = await movement_count(db)

    response = await client.post("/inventory/purchase", json=order(("b", 2), ("a", 6)))

    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [{"product_id": "a", "requested": 6, "available": 5}]
    # The expiry sweeper may let go of the hold meanwhile: versions are not compared.
    assert (await quantity_of(db, "a"), await quantity_of(db, "b")) == (5, 5)
    assert (await movement_count(db), await purchase_count(db)) == (movements, 0)
