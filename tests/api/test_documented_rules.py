"""The rules the OpenAPI document states, as the service applies them: integral numbers,
`If-None-Match`, event ids, webhook switches, and deleting a stock level that is held."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.support.problems import assert_problem
from tests.support.service import make_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, webhook_allowed_hosts=["127.0.0.1"])


async def test_an_integral_number_is_an_integer_everywhere(client: httpx.AsyncClient) -> None:
    created = await client.put("/inventory/42", json={"quantity": 17.0, "low_stock_threshold": 5.0})
    assert created.status_code == 201, created.text
    assert '"quantity":17,' in created.text
    assert created.json()["low_stock_threshold"] == 5

    adjusted = await client.post("/inventory/42/adjustments", json={"delta": -2.0, "reason": "x"})
    assert adjusted.status_code == 200, adjusted.text
    assert '"quantity":15,' in adjusted.text

    bought = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": 42.0, "quantity": 2.0}]}
    )
    assert bought.status_code == 201, bought.text
    assert bought.json()["items"][0]["product_id"] == "42"
    assert bought.json()["items"][0]["quantity"] == 2

    held = await client.post(
        "/reservations", json={"items": [{"product_id": "42", "quantity": 1e0}], "ttl_seconds": 6e2}
    )
    assert held.status_code == 201, held.text
    extended = await client.patch(f"/reservations/{held.json()['id']}", json={"ttl_seconds": 155.0})
    assert extended.status_code == 200, extended.text

    movements = (await client.get("/inventory/42/movements")).json()["items"]
    assert all(type(m["delta"]) is int and type(m["quantity_after"]) is int for m in movements)


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 2.5},
        {"quantity": "2"},
        {"quantity": True},
        {"quantity": 1e10},
        {"quantity": -1.0},
        {"quantity": 2, "low_stock_threshold": 0.5},
    ],
)
async def test_anything_else_is_not_an_integer(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert_problem(await client.put("/inventory/42", json=body), 422, "validation-error")


async def test_a_fractional_line_is_refused_and_nothing_is_taken(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/inventory/42", json={"quantity": 5})
    for line in ({"product_id": "42", "quantity": 1.5}, {"product_id": 42.5, "quantity": 1}):
        refused = await client.post("/inventory/purchase", json={"items": [line]})
        assert_problem(refused, 422, "validation-error")
    refused = await client.post(
        "/reservations", json={"items": [{"product_id": "42", "quantity": 1}], "ttl_seconds": 0.5}
    )
    assert_problem(refused, 422, "validation-error")
    assert (await client.get("/inventory/42")).json()["available"] == 5


# Written as literals: each rounds to a whole float, yet none is a whole number.
ROUNDING_LITERALS = ["0.99999999999999999999", "4.00000000000000000001", "1e-400", "7.0000000001"]


def _sent(client: httpx.AsyncClient, method: str, path: str, body: str) -> Any:
    return client.request(
        method, path, content=body.encode(), headers={"Content-Type": "application/json"}
    )


# Bodies with a number in every place an integer is read; `N` stands for the literal tried.
INTEGER_PLACES = [
    ("PUT", "/inventory/8", '{"quantity": N}'),
    ("PUT", "/inventory/7", '{"quantity": 3, "low_stock_threshold": N}'),
    ("POST", "/inventory/7/adjustments", '{"delta": N, "reason": "r"}'),
    ("POST", "/inventory/purchase", '{"items": [{"product_id": "7", "quantity": N}]}'),
    ("POST", "/inventory/purchase", '{"items": [{"product_id": N, "quantity": 1}]}'),
    ("POST", "/reservations", '{"items": [{"product_id": "7", "quantity": N}]}'),
    ("POST", "/reservations", '{"items": [{"product_id": N, "quantity": 1}]}'),
    ("POST", "/reservations", '{"items": [{"product_id": "7", "quantity": 1}], "ttl_seconds": N}'),
    ("PATCH", "/reservations/{hold}", '{"ttl_seconds": N}'),
]


@pytest.mark.parametrize("literal", ROUNDING_LITERALS)
async def test_the_literal_decides_never_its_rounding_to_a_float(
    client: httpx.AsyncClient, literal: str
) -> None:
    await client.put("/inventory/7", json={"quantity": 5})
    held = await client.post("/reservations", json={"items": [{"product_id": "7", "quantity": 1}]})
    for method, path, body in INTEGER_PLACES:
        where = path.format(hold=held.json()["id"])
        refused = await _sent(client, method, where, body.replace("N", literal))
        assert_problem(refused, 422, "validation-error")

    level = (await client.get("/inventory/7")).json()
    assert (level["quantity"], level["available"], level["low_stock_threshold"]) == (5, 4, None)
    assert (await client.get("/inventory/8")).status_code == 404


@pytest.mark.parametrize(
    ("literal", "value"),
    [("2.000", 2), ("2e3", 2000), ("2E+3", 2000), ("25e-1", None), ("-0.0", 0), ("1e20", None)],
)
async def test_a_whole_number_with_a_fraction_or_an_exponent_is_that_integer(
    client: httpx.AsyncClient, literal: str, value: int | None
) -> None:
    answer = await _sent(client, "PUT", "/inventory/42", '{"quantity": N}'.replace("N", literal))

    if value is None:
        assert_problem(answer, 422, "validation-error")
    else:
        assert answer.status_code == 201, answer.text
        assert answer.json()["quantity"] == value


async def test_a_huge_exponent_is_refused_at_once(client: httpx.AsyncClient) -> None:
    answer = await _sent(client, "PUT", "/inventory/42", '{"quantity": 1e999999999}')

    assert_problem(answer, 422, "validation-error")


async def test_if_none_match_takes_only_a_star(client: httpx.AsyncClient) -> None:
    for value in ("", '"1"', "W/*", "**"):
        refused = await client.put(
            "/inventory/42", json={"quantity": 1}, headers={"If-None-Match": value}
        )
        assert_problem(refused, 422, "validation-error")
    assert (await client.get("/inventory/42")).status_code == 404
    created = await client.put(
        "/inventory/42", json={"quantity": 1}, headers={"If-None-Match": "*"}
    )
    assert created.status_code == 201
    again = await client.put("/inventory/42", json={"quantity": 2}, headers={"If-None-Match": "*"})
    assert_problem(again, 412, "version-mismatch")


@pytest.mark.parametrize(
    "after",
    [
        "evt_8000000000000000" + "0" * 16,
        "evt_" + "0" * 16 + "ffffffffffffffff",
        "evt_" + "F" * 32,
        "0" * 64,
    ],
)
async def test_an_event_id_the_feed_cannot_have_issued_is_422(
    client: httpx.AsyncClient, after: str
) -> None:
    assert_problem(await client.get("/events", params={"after": after}), 422, "validation-error")


async def test_the_largest_event_id_is_read(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/events", params={"after": "evt_" + "7" + "f" * 15 + "7" + "f" * 15}
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_a_webhook_switch_is_a_json_boolean(client: httpx.AsyncClient) -> None:
    created = await client.post("/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = f"/webhooks/{created.json()['id']}"
    for value in (0, 1, "false", "off"):
        refused = await client.patch(endpoint, json={"enabled": value})
        assert_problem(refused, 422, "validation-error")
    assert (await client.get(endpoint)).json()["enabled"] is True
    assert (await client.patch(endpoint, json={"enabled": False})).json()["enabled"] is False


async def test_a_held_stock_level_cannot_be_forgotten(client: httpx.AsyncClient) -> None:
    await client.put("/inventory/42", json={"quantity": 5})
    held = await client.post("/reservations", json={"items": [{"product_id": "42", "quantity": 2}]})
    assert held.status_code == 201
    refused = await client.delete("/inventory/42")
    body = assert_problem(refused, 409, "insufficient-stock")
    assert body["items"] == [{"product_id": "42", "requested": 5, "available": 3}]
    assert (await client.get("/inventory/42")).status_code == 200


async def test_an_unknown_endpoint_is_404_whatever_cursor_comes_with_it(
    client: httpx.AsyncClient,
) -> None:
    unknown = "/webhooks/00000000-0000-4000-8000-000000000000/deliveries"
    response = await client.get(unknown, params={"cursor": "A" * 24})
    assert_problem(response, 404, "not-found")
    created = await client.post("/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
    known = f"/webhooks/{created.json()['id']}/deliveries"
    assert_problem(await client.get(known, params={"cursor": "A" * 24}), 422, "validation-error")
