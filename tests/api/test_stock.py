from __future__ import annotations

import httpx
import pytest

from app.core.database import Database
from tests.support.factories import ledger_sum, make_stock, quantity_of
from tests.support.problems import assert_problem


async def test_put_creates_a_stock_level_with_location_and_etag(client: httpx.AsyncClient) -> None:
    response = await client.put("/inventory/42", json={"quantity": 17, "reason": "delivery"})

    assert response.status_code == 201
    assert response.headers["Location"] == "/inventory/42"
    assert response.headers["ETag"] == '"1"'
    body = response.json()
    assert body["product_id"] == "42"
    assert body["quantity"] == 17
    assert body["version"] == 1
    assert body["product"] is None
    assert body["created_at"].endswith("Z")
    assert body["updated_at"].endswith("Z")


async def test_put_on_existing_stock_level_updates_and_bumps_version(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/inventory/42", json={"quantity": 17})
    response = await client.put("/inventory/42", json={"quantity": 5})

    assert response.status_code == 200
    assert response.json()["quantity"] == 5
    assert response.json()["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert "Location" not in response.headers


async def test_get_returns_the_stock_level_with_etag(client: httpx.AsyncClient) -> None:
    await client.put("/inventory/sku-1", json={"quantity": 3})

    response = await client.get("/inventory/sku-1")

    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert response.json()["quantity"] == 3


async def test_get_unknown_stock_level_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/inventory/nope"), 404, "not-found")


@pytest.mark.parametrize("product_id", ["-starts-with-dash", "a" * 65, "has space", "ü"])
async def test_malformed_product_id_in_path_is_422(
    client: httpx.AsyncClient, product_id: str
) -> None:
    assert_problem(await client.get(f"/inventory/{product_id}"), 422, "validation-error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantity": -1}, "quantity"),
        ({"quantity": 1_000_000_001}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": "3"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({}, "quantity"),
        ({"quantity": 1, "reason": ""}, "reason"),
        ({"quantity": 1, "reason": "x" * 201}, "reason"),
        ({"quantity": 1, "reason": "tab\there"}, "reason"),
    ],
)
async def test_put_with_invalid_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db: Database, body: dict[str, object], field: str
) -> None:
    body_out = assert_problem(await client.put("/inventory/9", json=body), 422, "validation-error")

    assert [error["field"] for error in body_out["errors"]] == [field]
    assert await quantity_of(db, "9") is None


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/inventory/9", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed-json")


async def test_put_if_match_with_the_current_version_updates(client: httpx.AsyncClient) -> None:
    await client.put("/inventory/1", json={"quantity": 1})
    response = await client.put("/inventory/1", json={"quantity": 2}, headers={"If-Match": '"1"'})
    assert response.status_code == 200
    assert response.json()["version"] == 2


async def test_put_if_match_with_a_stale_version_is_412_and_changes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    await client.put("/inventory/1", json={"quantity": 1})
    response = await client.put("/inventory/1", json={"quantity": 2}, headers={"If-Match": '"7"'})
    assert_problem(response, 412, "version-mismatch")
    assert await quantity_of(db, "1") == 1


async def test_put_if_match_on_a_missing_row_is_412(client: httpx.AsyncClient) -> None:
    response = await client.put("/inventory/1", json={"quantity": 2}, headers={"If-Match": '"1"'})
    assert_problem(response, 412, "version-mismatch")


async def test_malformed_if_match_is_422(client: httpx.AsyncClient) -> None:
    response = await client.put("/inventory/1", json={"quantity": 2}, headers={"If-Match": "one"})
    assert_problem(response, 422, "validation-error")


async def test_put_if_none_match_star_creates_only(client: httpx.AsyncClient) -> None:
    first = await client.put("/inventory/1", json={"quantity": 1}, headers={"If-None-Match": "*"})
    second = await client.put("/inventory/1", json={"quantity": 5}, headers={"If-None-Match": "*"})

    assert first.status_code == 201
    assert_problem(second, 412, "version-mismatch")
    assert (await client.get("/inventory/1")).json()["quantity"] == 1


async def test_put_accepts_integer_product_id_in_path_form(client: httpx.AsyncClient) -> None:
    response = await client.put("/inventory/007", json={"quantity": 1})
    assert response.json()["product_id"] == "007"


async def test_adjustment_adds_and_removes_stock(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "5", 10)

    up = await client.post("/inventory/5/adjustments", json={"delta": 4, "reason": "found"})
    down = await client.post("/inventory/5/adjustments", json={"delta": -14, "reason": "broken"})

    assert up.status_code == 200
    assert up.json()["quantity"] == 14
    assert down.json()["quantity"] == 0
    assert down.headers["ETag"] == '"3"'
    assert await ledger_sum(db, "5") == 0


async def test_adjustment_below_zero_is_409_with_the_short_line(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "5", 2)

    response = await client.post("/inventory/5/adjustments", json={"delta": -3, "reason": "x"})

    body = assert_problem(response, 409, "insufficient-stock")
    assert body["items"] == [{"product_id": "5", "requested": 3, "available": 2}]
    assert await quantity_of(db, "5") == 2
    assert await ledger_sum(db, "5") == 2


async def test_adjustment_above_the_maximum_is_422(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "5", 1_000_000_000)
    response = await client.post("/inventory/5/adjustments", json={"delta": 1, "reason": "x"})
    assert_problem(response, 422, "validation-error")
    assert await quantity_of(db, "5") == 1_000_000_000


async def test_adjustment_of_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/inventory/5/adjustments", json={"delta": 1, "reason": "x"})
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    "body", [{"delta": 0, "reason": "x"}, {"delta": 1}, {"delta": 1, "reason": ""}, {"delta": 1.0}]
)
async def test_invalid_adjustment_is_422(
    client: httpx.AsyncClient, db: Database, body: dict[str, object]
) -> None:
    await make_stock(db, "5", 1)
    assert_problem(
        await client.post("/inventory/5/adjustments", json=body), 422, "validation-error"
    )
    assert await quantity_of(db, "5") == 1


async def test_adjustment_honours_if_match(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "5", 1)
    body = {"delta": 1, "reason": "x"}

    stale = await client.post("/inventory/5/adjustments", json=body, headers={"If-Match": '"9"'})
    fresh = await client.post("/inventory/5/adjustments", json=body, headers={"If-Match": '"1"'})

    assert_problem(stale, 412, "version-mismatch")
    assert fresh.status_code == 200
    assert fresh.json()["quantity"] == 2


async def test_delete_forgets_the_stock_level_but_keeps_its_ledger(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "5", 4)

    response = await client.delete("/inventory/5")

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get("/inventory/5"), 404, "not-found")
    movements = (await client.get("/inventory/5/movements")).json()["items"]
    assert [m["kind"] for m in movements] == ["delete", "set"]
    assert movements[0]["delta"] == -4
    assert movements[0]["quantity_after"] == 0
    assert await ledger_sum(db, "5") == 0


async def test_delete_missing_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/inventory/5"), 404, "not-found")


async def test_delete_with_stale_if_match_is_412(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "5", 4)
    assert_problem(
        await client.delete("/inventory/5", headers={"If-Match": '"2"'}), 412, "version-mismatch"
    )
    assert (await client.delete("/inventory/5", headers={"If-Match": '"1"'})).status_code == 204


async def test_movements_are_newest_first_with_actor_and_request_id(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/inventory/5", json={"quantity": 4}, headers={"X-Request-ID": "req-1"})
    await client.post(
        "/inventory/5/adjustments",
        json={"delta": -1, "reason": "sold at the counter"},
        headers={"X-Request-ID": "req-2"},
    )

    response = await client.get("/inventory/5/movements")

    assert response.status_code == 200
    items = response.json()["items"]
    assert [(m["kind"], m["delta"], m["quantity_after"]) for m in items] == [
        ("adjust", -1, 3),
        ("set", 4, 4),
    ]
    assert [m["request_id"] for m in items] == ["req-2", "req-1"]
    assert {m["actor"] for m in items} == {"default"}
    assert items[0]["reason"] == "sold at the counter"
    assert isinstance(items[0]["id"], str)
    assert response.json()["next_cursor"] is None


async def test_movements_of_a_product_that_never_existed_is_404(
    client: httpx.AsyncClient,
) -> None:
    assert_problem(await client.get("/inventory/5/movements"), 404, "not-found")


async def test_movements_paginate(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "5", 10)
    for _ in range(4):
        await client.post("/inventory/5/adjustments", json={"delta": -1, "reason": "x"})

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/inventory/5/movements", params=params)).json()
        seen += [m["quantity_after"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [6, 7, 8, 9, 10]


async def test_list_is_ordered_by_product_id_and_paginates(
    client: httpx.AsyncClient, db: Database
) -> None:
    for product_id in ["b", "a", "C", "10", "9"]:
        await make_stock(db, product_id, 1)

    first = (await client.get("/inventory", params={"limit": 3})).json()
    second = (
        await client.get("/inventory", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()

    assert [s["product_id"] for s in first["items"]] == ["10", "9", "C"]
    assert [s["product_id"] for s in second["items"]] == ["a", "b"]
    assert second["next_cursor"] is None
    assert "product" not in first["items"][0] or first["items"][0]["product"] is None


async def test_list_filters_by_product_ids_and_max_quantity(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "a", 1)
    await make_stock(db, "b", 5)
    await make_stock(db, "c", 9)

    by_id = await client.get("/inventory", params=[("product_id", "a"), ("product_id", "c")])
    low = await client.get("/inventory", params={"max_quantity": 5})

    assert [s["product_id"] for s in by_id.json()["items"]] == ["a", "c"]
    assert [s["product_id"] for s in low.json()["items"]] == ["a", "b"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"max_quantity": -1},
        {"cursor": "forged"},
        {"product_id": "-x"},
    ],
)
async def test_list_with_bad_parameters_is_422(
    client: httpx.AsyncClient, params: dict[str, int | str]
) -> None:
    assert_problem(await client.get("/inventory", params=params), 422, "validation-error")


async def test_cursor_of_one_list_is_refused_by_another(
    client: httpx.AsyncClient, db: Database
) -> None:
    for product_id in ["a", "b"]:
        await make_stock(db, product_id, 1)
    cursor = (await client.get("/inventory", params={"limit": 1})).json()["next_cursor"]

    response = await client.get("/inventory/a/movements", params={"cursor": cursor})

    assert_problem(response, 422, "validation-error")
