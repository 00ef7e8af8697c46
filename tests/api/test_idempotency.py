from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select, update

from app.api.deps import get_catalog
from app.clients.products import ProductLookup, ProductStatus
from app.core.database import Database
from app.core.errors import ProductsUnavailable
from app.models import IdempotencyKey
from app.models.base import utcnow
from app.schemas.purchases import PurchaseIn
from app.services.idempotency import fingerprint, purge_expired
from tests.support.factories import make_stock, purchase_count, quantity_of, snapshot
from tests.support.orders import order
from tests.support.problems import assert_problem
from tests.support.service import client_for

KEY = {"Idempotency-Key": "order-1001-attempt"}


async def test_repeat_with_same_key_replays_the_first_answer(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)

    first = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)
    again = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await quantity_of(db, "a") == 3
    assert await purchase_count(db) == 1


async def test_same_key_with_another_body_is_422(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "a", 5)
    await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)

    response = await client.post("/inventory/purchase", json=order(("a", 3)), headers=KEY)

    assert_problem(response, 422, "idempotency-key-reuse")
    assert await quantity_of(db, "a") == 3


async def test_a_409_answer_is_stored_and_replayed_even_after_restock(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 1)
    first = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)
    await client.put("/inventory/a", json={"quantity": 10})

    again = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)

    assert first.status_code == again.status_code == 409
    assert again.json() == first.json()
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await quantity_of(db, "a") == 10


async def test_keys_are_scoped_per_actor(app: FastAPI, db: Database) -> None:
    await make_stock(db, "a", 5)
    async with (
        client_for(app, **{"X-API-KEY": "test-key-0123456789"} | KEY) as default,
        client_for(app, **{"X-API-KEY": "robot-key-abcdef"} | KEY) as robot,
    ):
        first = await default.post("/inventory/purchase", json=order(("a", 1)))
        second = await robot.post("/inventory/purchase", json=order(("a", 1)))

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert await quantity_of(db, "a") == 3


async def test_adjustments_are_idempotent(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "a", 5)
    body = {"delta": -2, "reason": "breakage"}

    first = await client.post("/inventory/a/adjustments", json=body, headers=KEY)
    again = await client.post("/inventory/a/adjustments", json=body, headers=KEY)
    other = await client.post("/inventory/b/adjustments", json=body, headers=KEY)

    assert again.json() == first.json()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_problem(other, 422, "idempotency-key-reuse")
    assert await quantity_of(db, "a") == 3


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "ünï"])
async def test_malformed_idempotency_key_is_422(
    client: httpx.AsyncClient, db: Database, key: str
) -> None:
    await make_stock(db, "a", 5)
    before = await snapshot(db)

    response = await client.post(
        "/inventory/purchase", json=order(("a", 1)), headers={b"Idempotency-Key": key.encode()}
    )

    assert_problem(response, 422, "validation-error")
    assert await snapshot(db) == before


async def test_a_claim_in_flight_answers_409_with_retry_after(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    # A first request that claimed the key and is still running looks like this.
    first = await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)
    await db.write(
        lambda connection: connection.execute(
            update(IdempotencyKey).values(
                status_code=None, answer=None, lease_until=utcnow() + timedelta(seconds=30)
            )
        )
    )

    response = await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)

    assert first.status_code == 201
    assert_problem(response, 409, "idempotency-key-in-use")
    assert response.headers["Retry-After"] == "1"
    assert await quantity_of(db, "a") == 4


async def test_an_abandoned_claim_is_taken_over_after_its_lease(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)
    # The first owner died before committing: its claim has no answer and an old lease.
    await db.write(
        lambda connection: connection.execute(
            update(IdempotencyKey).values(
                status_code=None, answer=None, lease_until=utcnow() - timedelta(seconds=1)
            )
        )
    )

    response = await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


async def test_expired_keys_are_purged_and_then_forgotten(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)
    assert await purge_expired(db) == 0
    await db.write(
        lambda connection: connection.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )

    assert await purge_expired(db) == 1
    again = await client.post("/inventory/purchase", json=order(("a", 1)), headers=KEY)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert await quantity_of(db, "a") == 3


class FlakyCatalog:
    """Cannot answer the first time, knows every product after that."""

    enabled = True

    def __init__(self) -> None:
        self.calls = 0

    async def lookup(self, product_id: str) -> ProductLookup:
        self.calls += 1
        if self.calls == 1:
            raise ProductsUnavailable("down", retry_after=3, product_ids=[product_id])
        return ProductLookup(product_id, ProductStatus.FOUND, {"id": product_id, "price": "2.5"})

    async def probe(self) -> str:
        return "ok"


async def test_a_503_is_not_stored_so_the_same_key_can_be_retried(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    catalog = FlakyCatalog()

    async def flaky_catalog() -> FlakyCatalog:
        return catalog

    app.dependency_overrides[get_catalog] = flaky_catalog

    first = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)
    retry = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)

    assert_problem(first, 503, "products-unavailable")
    assert first.headers["Retry-After"] == "3"
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.json()["total"] == "5.00"
    assert await quantity_of(db, "a") == 3


async def test_the_path_is_part_of_the_fingerprint(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "a", 5)
    await make_stock(db, "b", 5)
    adjustment = {"delta": -1, "reason": "damaged"}
    first = await client.post("/inventory/a/adjustments", json=adjustment, headers=KEY)
    assert first.status_code == 200

    other = await client.post("/inventory/b/adjustments", json=adjustment, headers=KEY)

    assert_problem(other, 422, "idempotency-key-reuse")
    assert await quantity_of(db, "b") == 5


async def test_an_answer_stored_before_is_replayed_as_it_was_written(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Stored answers outlive a deployment: their text is replayed whatever wrote it."""
    body = order(("a", 2))
    asked = PurchaseIn.model_validate(body).model_dump(mode="json")
    receipt = {"id": "a-receipt", "status": "completed", "note": "ünïcode"}
    written = (
        '{"status": 201, "headers": {"Location": "/inventory/purchases/a-receipt"}, '
        '"body": {"id": "a-receipt", "status": "completed", "note": "\\u00fcn\\u00efcode"}}'
    )
    now = utcnow()
    await db.write(
        lambda connection: connection.execute(
            insert(IdempotencyKey).values(
                actor="default",
                key=KEY["Idempotency-Key"],
                fingerprint=fingerprint("POST", "/inventory/purchase", asked),
                owner="an-earlier-process",
                lease_until=now,
                status_code=201,
                answer=written,
                created_at=now,
                expires_at=now + timedelta(hours=24),
            )
        )
    )

    again = await client.post("/inventory/purchase", json=body, headers=KEY)

    assert again.status_code == 201
    assert again.headers["Location"] == "/inventory/purchases/a-receipt"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == json.dumps(receipt, ensure_ascii=False, separators=(",", ":")).encode()
    assert await purchase_count(db) == 0


async def test_the_kept_answer_is_the_receipt_and_the_replay_is_rendered_from_it_alike(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)

    first = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)
    again = await client.post("/inventory/purchase", json=order(("a", 2)), headers=KEY)

    kept = await db.read(
        lambda connection: connection.execute(
            select(IdempotencyKey.status_code, IdempotencyKey.answer)
        ).one()
    )
    assert kept.status_code == 201
    assert json.loads(kept.answer) == {"result": first.json(), "created": True}
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
