"""Product ids as the API reads them: `purchase` and `purchases` are route names, and a
refused id is told which rule it broke."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.database import Database
from tests.support.factories import make_stock, snapshot
from tests.support.problems import assert_problem

RESERVED = ["purchase", "purchases"]


def assert_invalid(response: httpx.Response, field: str, message: str) -> None:
    body = assert_problem(response, 422, "validation-error")
    assert {"field": field, "message": message} in body["errors"], body


@pytest.mark.parametrize("reserved", RESERVED)
async def test_a_reserved_id_in_a_path_is_422_and_creates_nothing(
    client: httpx.AsyncClient, db: Database, reserved: str
) -> None:
    await make_stock(db, "7", 3)
    before = await snapshot(db)
    message = f"'{reserved}' names the purchase routes; it cannot be a product id"

    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", f"/inventory/{reserved}", {"quantity": 1}),
        ("GET", f"/inventory/{reserved}", None),
        ("DELETE", f"/inventory/{reserved}", None),
        ("POST", f"/inventory/{reserved}/adjustments", {"delta": 1, "reason": "r"}),
        ("GET", f"/inventory/{reserved}/movements", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
        assert_invalid(response, "product_id", message)

    assert await snapshot(db) == before


@pytest.mark.parametrize("reserved", RESERVED)
async def test_a_reserved_id_in_a_query_or_a_body_is_422(
    client: httpx.AsyncClient, db: Database, reserved: str
) -> None:
    await make_stock(db, "7", 3)
    before = await snapshot(db)
    message = f"'{reserved}' names the purchase routes; it cannot be a product id"

    listed = await client.get("/inventory", params={"product_id": ["7", reserved]})
    holding = await client.get("/reservations", params={"product_id": reserved})
    bought = await client.post(
        "/inventory/purchase",
        json={
            "items": [{"product_id": "7", "quantity": 1}, {"product_id": reserved, "quantity": 1}]
        },
    )

    assert_invalid(listed, "product_id.1", message)
    assert_invalid(holding, "product_id", message)
    assert_invalid(bought, "items.1.product_id", message)
    assert await snapshot(db) == before


async def test_ids_that_merely_start_like_a_reserved_one_are_products(
    client: httpx.AsyncClient,
) -> None:
    for product_id in ("purchase-1", "purchasesx", "Purchase"):
        response = await client.put(f"/inventory/{product_id}", json={"quantity": 1})
        assert response.status_code == 201, (product_id, response.text)


@pytest.mark.parametrize(
    ("product_id", "message"),
    [
        (".hidden", "must start with a letter or a digit"),
        ("-x", "must start with a letter or a digit"),
        ("a b", "may hold only letters, digits, '.', '_' and '-'"),
        ("x" * 65, "must be 1–64 characters long"),
    ],
)
async def test_the_message_names_the_rule_an_id_broke(
    client: httpx.AsyncClient, product_id: str, message: str
) -> None:
    response = await client.put(f"/inventory/{product_id}", json={"quantity": 1})
    assert_invalid(response, "product_id", message)


async def test_messages_of_our_own_rules_carry_no_value_error_prefix(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)
    response = await client.post("/inventory/7/adjustments", json={"delta": 0, "reason": "r"})
    assert_invalid(response, "delta", "must not be zero")


async def test_an_integer_product_id_beyond_two_to_the_53_is_422(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "9007199254740991", 3)
    largest = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": 2**53 - 1, "quantity": 1}]}
    )
    beyond = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": 2**53, "quantity": 1}]}
    )
    assert largest.status_code == 201, largest.text
    assert_problem(beyond, 422, "validation-error")
