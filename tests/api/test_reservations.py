"""The contract's rows for reservations, over HTTP, on both engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.core.database import Database
from devtools.invariants import broken_invariants
from tests.support.factories import ledger_sum, make_stock, quantity_of
from tests.support.problems import assert_problem

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def hold(*lines: tuple[str | int, int], **extra: Any) -> dict[str, Any]:
    items = [{"product_id": pid, "quantity": quantity} for pid, quantity in lines]
    return {"items": items, **extra}


async def level(client: httpx.AsyncClient, product_id: str) -> dict[str, Any]:
    response = await client.get(f"/inventory/{product_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reserve(client: httpx.AsyncClient, *lines: tuple[str, int], **extra: Any) -> str:
    response = await client.post("/reservations", json=hold(*lines, **extra))
    assert response.status_code == 201, response.text
    reservation_id: str = response.json()["id"]
    return reservation_id


async def until(check: Callable[[], Awaitable[bool]], *, seconds: float = 5.0) -> None:
    """Poll `check` (an async predicate) until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def test_a_hold_answers_201_and_moves_units_from_available_to_reserved(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "42", 17)

    response = await client.post(
        "/reservations", json=hold(("42", 2), (42, 1), ttl_seconds=600, reference="cart-77")
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/reservations/{body['id']}"
    assert body["status"] == "active"
    assert body["reference"] == "cart-77"
    assert body["items"] == [{"product_id": "42", "quantity": 3, "unit_price": None}]
    assert body["purchase_id"] is None
    assert body["created_at"].endswith("Z")
    assert body["expires_at"].endswith("Z")
    stock = await level(client, "42")
    assert (stock["quantity"], stock["reserved"], stock["available"]) == (17, 3, 14)
    listed = (await client.get("/inventory", params={"product_id": "42"})).json()["items"]
    assert (listed[0]["reserved"], listed[0]["available"]) == (3, 14)
    assert await ledger_sum(db, "42") == 17  # holding writes no movement
    assert (await client.get(f"/reservations/{body['id']}")).json() == body


async def test_a_hold_short_of_available_holds_nothing_and_names_every_short_line(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    await make_stock(db, "b", 1)
    await reserve(client, ("a", 4))

    response = await client.post("/reservations", json=hold(("b", 1), ("a", 2), ("zz", 1)))

    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [
        {"product_id": "a", "requested": 2, "available": 1},
        {"product_id": "zz", "requested": 1, "available": 0},
    ]
    assert (await level(client, "b"))["reserved"] == 0
    active = (await client.get("/reservations", params={"status": "active"})).json()["items"]
    assert len(active) == 1


async def test_purchases_take_only_available_and_stock_never_goes_below_reserved(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    await reserve(client, ("a", 3))

    bought = await client.post("/inventory/purchase", json=hold(("a", 3)))
    short = assert_problem(bought, 409, "insufficient-stock")
    assert short["items"] == [{"product_id": "a", "requested": 3, "available": 2}]
    adjust = await client.post("/inventory/a/adjustments", json={"delta": -3, "reason": "lost"})
    assert assert_problem(adjust, 409, "insufficient-stock")["items"] == [
        {"product_id": "a", "requested": 3, "available": 2}
    ]
    put = await client.put("/inventory/a", json={"quantity": 2})
    assert assert_problem(put, 409, "insufficient-stock")["items"] == [
        {"product_id": "a", "requested": 3, "available": 2}
    ]
    deleted = await client.delete("/inventory/a")
    assert assert_problem(deleted, 409, "insufficient-stock")["items"] == [
        {"product_id": "a", "requested": 5, "available": 2}
    ]

    assert (await client.post("/inventory/purchase", json=hold(("a", 2)))).status_code == 201
    assert (await client.put("/inventory/a", json={"quantity": 3})).status_code == 200
    stock = await level(client, "a")
    assert (stock["quantity"], stock["reserved"], stock["available"]) == (3, 3, 0)
    assert await broken_invariants(db) == []


async def test_confirm_takes_the_held_units_as_one_purchase_and_again_answers_the_receipt(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 10)
    await make_stock(db, "b", 4)
    reservation_id = await reserve(client, ("b", 1), ("a", 3), reference="cart-9")

    first = await client.post(f"/reservations/{reservation_id}/confirm")

    assert first.status_code == 201, first.text
    receipt = first.json()
    assert first.headers["Location"] == f"/inventory/purchases/{receipt['id']}"
    assert receipt["status"] == "completed"
    assert receipt["reference"] == "cart-9"
    assert [(i["product_id"], i["quantity"], i["remaining"]) for i in receipt["items"]] == [
        ("b", 1, 3),
        ("a", 3, 7),
    ]
    again = await client.post(f"/reservations/{reservation_id}/confirm")
    assert again.status_code == 200
    assert again.json() == receipt
    assert (await client.get(f"/inventory/purchases/{receipt['id']}")).json() == receipt
    held = (await client.get(f"/reservations/{reservation_id}")).json()
    assert (held["status"], held["purchase_id"]) == ("confirmed", receipt["id"])
    stock = await level(client, "a")
    assert (stock["quantity"], stock["reserved"], stock["available"]) == (7, 0, 7)
    moves = (await client.get("/inventory/a/movements")).json()["items"]
    assert (moves[0]["kind"], moves[0]["delta"], moves[0]["purchase_id"]) == (
        "purchase",
        -3,
        receipt["id"],
    )
    assert moves[0]["reason"] == "cart-9"
    release = await client.post(f"/reservations/{reservation_id}/release")
    assert assert_problem(release, 409, "reservation-not-active")["reservation_status"] == (
        "confirmed"
    )
    extend = await client.patch(f"/reservations/{reservation_id}", json={"ttl_seconds": 60})
    assert_problem(extend, 409, "reservation-not-active")
    assert await broken_invariants(db) == []


async def test_release_gives_the_units_back_once_and_a_released_hold_cannot_be_confirmed(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 2)
    reservation_id = await reserve(client, ("a", 2))

    first = await client.post(f"/reservations/{reservation_id}/release")
    again = await client.post(f"/reservations/{reservation_id}/release")

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "released"
    assert again.json() == first.json()
    assert (await level(client, "a"))["available"] == 2
    confirm = await client.post(f"/reservations/{reservation_id}/confirm")
    assert assert_problem(confirm, 409, "reservation-not-active")["reservation_status"] == (
        "released"
    )
    assert await quantity_of(db, "a") == 2
    assert await broken_invariants(db) == []


async def test_patch_moves_the_expiry_of_an_active_hold(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 2)
    reservation_id = await reserve(client, ("a", 1), ttl_seconds=5)
    before = (await client.get(f"/reservations/{reservation_id}")).json()

    response = await client.patch(f"/reservations/{reservation_id}", json={"ttl_seconds": 3600})

    assert response.status_code == 200, response.text
    assert response.json()["expires_at"] > before["expires_at"]
    assert response.json()["status"] == "active"
    bad = await client.patch(f"/reservations/{reservation_id}", json={"ttl_seconds": 0})
    assert_problem(bad, 422, "validation-error")
    missing = await client.patch(f"/reservations/{UNKNOWN_ID}", json={"ttl_seconds": 10})
    assert_problem(missing, 404, "not-found")


async def test_an_expired_hold_frees_its_units_and_can_be_released_but_not_confirmed(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 3)
    reservation_id = await reserve(client, ("a", 3), ttl_seconds=1)
    assert (await level(client, "a"))["available"] == 0

    async def freed() -> bool:
        available: int = (await level(client, "a"))["available"]
        return available == 3

    await until(freed)
    status = (await client.get(f"/reservations/{reservation_id}")).json()["status"]
    assert status == "expired"
    confirm = await client.post(f"/reservations/{reservation_id}/confirm")
    assert assert_problem(confirm, 409, "reservation-not-active")["reservation_status"] == (
        "expired"
    )
    release = await client.post(f"/reservations/{reservation_id}/release")
    assert (release.status_code, release.json()["status"]) == (200, "expired")
    assert_problem(
        await client.patch(f"/reservations/{reservation_id}", json={"ttl_seconds": 60}),
        409,
        "reservation-not-active",
    )
    listed = (await client.get("/reservations", params={"status": "expired"})).json()
    assert [item["id"] for item in listed["items"]] == [reservation_id]
    assert (await client.post("/inventory/purchase", json=hold(("a", 3)))).status_code == 201
    assert await broken_invariants(db) == []


async def test_list_is_newest_first_with_filters_and_cursors(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 10)
    await make_stock(db, "b", 10)
    ids = [await reserve(client, ("a" if i % 2 else "b", 1)) for i in range(5)]
    await client.post(f"/reservations/{ids[0]}/release")

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/reservations", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ids[::-1]
    only_a = (await client.get("/reservations", params={"product_id": "a"})).json()["items"]
    assert [item["id"] for item in only_a] == [ids[3], ids[1]]
    released = (await client.get("/reservations", params={"status": "released"})).json()
    assert [item["id"] for item in released["items"]] == [ids[0]]
    active = (await client.get("/reservations", params={"status": "active"})).json()
    assert len(active["items"]) == 4
    assert_problem(
        await client.get("/reservations", params={"status": "gone"}), 422, "validation-error"
    )
    assert_problem(
        await client.get("/reservations", params={"cursor": "bogus"}), 422, "validation-error"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"product_id": "a", "quantity": 0}]},
        {"items": [{"product_id": "a", "quantity": 1}], "ttl_seconds": 86_401},
        {"items": [{"product_id": "a", "quantity": 1}], "ttl_seconds": "60"},
    ],
)
async def test_bad_holds_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_problem(await client.post("/reservations", json=body), 422, "validation-error")


async def test_unknown_or_malformed_ids_are_404(client: httpx.AsyncClient) -> None:
    for path in (f"/reservations/{UNKNOWN_ID}", "/reservations/nope"):
        assert_problem(await client.get(path), 404, "not-found")
        assert_problem(await client.post(f"{path}/confirm"), 404, "not-found")
        assert_problem(await client.post(f"{path}/release"), 404, "not-found")


async def test_reservations_need_the_api_key(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/reservations", json={"items": "not even valid"})
    assert_problem(response, 401, "unauthorized")
    assert_problem(await anonymous.get("/reservations"), 401, "unauthorized")


async def test_keyed_hold_and_confirm_replay_their_first_answers(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 5)
    body = hold(("a", 2))
    first = await client.post("/reservations", json=body, headers={"Idempotency-Key": "h-1"})
    again = await client.post("/reservations", json=body, headers={"Idempotency-Key": "h-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await level(client, "a"))["reserved"] == 2

    path = f"/reservations/{first.json()['id']}/confirm"
    confirmed = await client.post(path, headers={"Idempotency-Key": "c-1"})
    replayed = await client.post(path, headers={"Idempotency-Key": "c-1"})
    assert (confirmed.status_code, replayed.status_code) == (201, 201)
    assert replayed.json() == confirmed.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await quantity_of(db, "a") == 3
    assert await broken_invariants(db) == []
