"""JSON:API 1.1 for clients that ask for it: every resource, list and error, and bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.routing import ResourceRoute
from app.core.config import Settings
from app.core.database import Database
from tests.support.factories import make_stock, snapshot
from tests.support.service import API_KEY, client_for, make_settings

MEDIA_TYPE = "application/vnd.api+json"
ACCEPT = {"Accept": MEDIA_TYPE}
SEND = {"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE}
# Members JSON:API 1.1 allows at the top of a document.
TOP_LEVEL = {"data", "errors", "meta", "jsonapi", "links", "included"}
ERROR_MEMBERS = {"id", "links", "status", "code", "title", "detail", "source", "meta"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Webhook endpoints on this machine are allowed, so that they can be registered."""
    return make_settings(database_url, webhook_allowed_hosts=["127.0.0.1"])


def assert_resource(resource: Any, resource_type: str) -> dict[str, Any]:
    """A resource object by the rules of JSON:API 1.1 §7.2; returns its attributes."""
    assert isinstance(resource, dict)
    assert resource["type"] == resource_type
    assert isinstance(resource["id"], str)
    assert resource["id"]
    assert set(resource) <= {"type", "id", "attributes", "relationships", "links", "meta"}
    attributes = resource["attributes"]
    assert isinstance(attributes, dict)
    # §7.2.2.1: no attribute may be named like a resource's own members.
    assert not {"id", "type", "relationships", "links"} & set(attributes)
    return attributes


def jsonapi(response: httpx.Response, status: int) -> dict[str, Any]:
    """The document of a JSON:API answer, checked against the rules every document follows."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == MEDIA_TYPE
    assert "Accept" in response.headers["vary"]
    document: dict[str, Any] = response.json()
    assert set(document) <= TOP_LEVEL
    # §7.1: `data` or `errors`, never both.
    assert ("data" in document) != ("errors" in document)
    return document


def one(response: httpx.Response, status: int, resource_type: str) -> tuple[str, dict[str, Any]]:
    document = jsonapi(response, status)
    attributes = assert_resource(document["data"], resource_type)
    return document["data"]["id"], attributes


def page(response: httpx.Response, resource_type: str) -> tuple[list[str], str | None]:
    document = jsonapi(response, 200)
    assert isinstance(document["data"], list)
    ids = []
    for item in document["data"]:
        assert_resource(item, resource_type)
        ids.append(item["id"])
    next_link: str | None = document["links"]["next"]
    return ids, next_link


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    document = jsonapi(response, status)
    [only] = document["errors"]
    assert set(only) <= ERROR_MEMBERS
    assert only["status"] == str(status)  # a string, §11.2
    assert only["code"] == code
    assert only["links"]["type"] == f"/problems/{code}"
    assert only["title"]
    assert only["detail"]
    assert only["meta"]["request_id"] == response.headers["X-Request-ID"]
    meta: dict[str, Any] = only["meta"]
    return meta


async def test_a_stock_level_is_a_stock_levels_resource(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)

    response = await client.get("/inventory/7", headers=ACCEPT)

    resource_id, attributes = one(response, 200, "stock-levels")
    assert resource_id == "7"
    assert "product_id" not in attributes
    assert attributes["quantity"] == 3
    assert attributes["version"] == 1
    assert response.headers["ETag"] == '"1"'


async def test_without_the_jsonapi_accept_nothing_changes(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)
    for accept in (None, "application/json", "*/*"):
        headers = {} if accept is None else {"Accept": accept}
        response = await client.get("/inventory/7", headers=headers)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["product_id"] == "7"
        assert "Accept" in response.headers["vary"]


async def test_the_stock_list_pages_with_links_next(
    client: httpx.AsyncClient, db: Database
) -> None:
    for product_id in ("a", "b", "c"):
        await make_stock(db, product_id, 1)

    first, next_link = page(await client.get("/inventory?limit=2", headers=ACCEPT), "stock-levels")
    assert next_link is not None
    assert next_link.startswith("/inventory?limit=2&cursor=")
    second, last_link = page(await client.get(next_link, headers=ACCEPT), "stock-levels")

    assert first + second == ["a", "b", "c"]
    assert last_link is None


async def test_a_ledger_is_a_list_of_movements(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "7", 3)
    await client.post("/inventory/7/adjustments", json={"delta": 2, "reason": "found"})

    ids, next_link = page(await client.get("/inventory/7/movements", headers=ACCEPT), "movements")

    assert len(ids) == 2
    assert next_link is None


async def test_a_purchase_is_made_read_and_cancelled_in_jsonapi(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)
    body = {
        "data": {"type": "purchases", "attributes": {"items": [{"product_id": "7", "quantity": 2}]}}
    }

    created = await client.post("/inventory/purchase", json=body, headers=SEND)
    purchase_id, attributes = one(created, 201, "purchases")
    read = await client.get(f"/inventory/purchases/{purchase_id}", headers=ACCEPT)
    cancelled = await client.post(f"/inventory/purchases/{purchase_id}/cancel", headers=ACCEPT)

    assert created.headers["Location"] == f"/inventory/purchases/{purchase_id}"
    assert attributes["status"] == "completed"
    assert attributes["items"][0]["remaining"] == 1
    assert one(read, 200, "purchases") == (purchase_id, attributes)
    assert one(cancelled, 200, "purchases")[1]["status"] == "cancelled"


async def test_a_reservation_is_held_and_confirmed_in_jsonapi(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)
    body = {
        "data": {
            "type": "reservations",
            "attributes": {"items": [{"product_id": "7", "quantity": 2}], "ttl_seconds": 60},
        }
    }

    held = await client.post("/reservations", json=body, headers=SEND)
    reservation_id, attributes = one(held, 201, "reservations")
    listed = jsonapi(await client.get("/reservations", headers=ACCEPT), 200)
    confirmed = await client.post(f"/reservations/{reservation_id}/confirm", headers=ACCEPT)

    assert attributes["status"] == "active"
    assert [item["id"] for item in listed["data"]] == [reservation_id]
    assert one(confirmed, 201, "purchases")[1]["status"] == "completed"


async def test_a_jsonapi_write_sets_and_adjusts_stock(client: httpx.AsyncClient) -> None:
    put = {"data": {"type": "stock-levels", "id": "7", "attributes": {"quantity": 5}}}
    adjust = {"data": {"type": "adjustments", "attributes": {"delta": -2, "reason": "broken"}}}

    created = await client.put("/inventory/7", json=put, headers=SEND)
    adjusted = await client.post("/inventory/7/adjustments", json=adjust, headers=SEND)
    plain = await client.get("/inventory/7")

    assert one(created, 201, "stock-levels")[1]["quantity"] == 5
    assert one(adjusted, 200, "stock-levels")[1]["quantity"] == 3
    assert plain.json()["quantity"] == 3


async def test_a_jsonapi_body_answers_plain_json_to_a_plain_accept(
    client: httpx.AsyncClient,
) -> None:
    put = {"data": {"type": "stock-levels", "attributes": {"quantity": 5}}}
    response = await client.put("/inventory/7", json=put, headers={"Content-Type": MEDIA_TYPE})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["product_id"] == "7"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"data": {"type": "purchases", "attributes": {"quantity": 5}}}, 409, "type-mismatch"),
        (
            {"data": {"type": "stock-levels", "id": "8", "attributes": {"quantity": 5}}},
            409,
            "type-mismatch",
        ),
        ({"quantity": 5}, 422, "validation-error"),
        ({"data": [{"type": "stock-levels"}]}, 422, "validation-error"),
        ({"data": {"type": 1, "attributes": {"quantity": 5}}}, 422, "validation-error"),
        ({"data": {"type": "stock-levels", "attributes": [5]}}, 422, "validation-error"),
        (
            {"data": {"type": "stock-levels", "attributes": {"quantity": -1}}},
            422,
            "validation-error",
        ),
    ],
)
async def test_a_jsonapi_body_of_the_wrong_shape_changes_nothing(
    client: httpx.AsyncClient, db: Database, body: Any, status: int, code: str
) -> None:
    before = await snapshot(db)
    response = await client.put("/inventory/7", json=body, headers=SEND)
    error(response, status, code)
    assert await snapshot(db) == before


async def test_errors_are_jsonapi_errors_with_the_problem_in_meta(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 1)
    order = {"items": [{"product_id": "7", "quantity": 5}]}

    missing = await client.get("/inventory/8", headers=ACCEPT)
    short = await client.post("/inventory/purchase", json=order, headers=ACCEPT)
    invalid = await client.put("/inventory/7", json={"quantity": "x"}, headers=ACCEPT)
    unknown_route = await client.get("/nowhere", headers=ACCEPT)

    error(missing, 404, "not-found")
    assert error(short, 409, "insufficient-stock")["items"] == [
        {"product_id": "7", "requested": 5, "available": 1}
    ]
    assert error(invalid, 422, "validation-error")["errors"][0]["field"] == "quantity"
    error(unknown_route, 404, "not-found")


async def test_refusals_before_routing_are_jsonapi_errors_too(app: FastAPI) -> None:
    async with client_for(app) as anonymous:
        response = await anonymous.get("/inventory/7", headers=ACCEPT)
    error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "ApiKey"


async def test_an_accept_naming_only_unsupported_jsonapi_variants_is_406(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 1)
    for accept in (
        f"{MEDIA_TYPE}; ext=https://jsonapi.org/ext/atomic",
        f"{MEDIA_TYPE}; version=2",
        f"{MEDIA_TYPE}; charset=utf-8, {MEDIA_TYPE}; q=0",
    ):
        response = await client.get("/inventory/7", headers={"Accept": accept})
        assert response.status_code == 406, (accept, response.text)
        assert response.json()["type"] == "/problems/not-acceptable"


async def test_a_usable_jsonapi_instance_among_others_is_jsonapi(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 1)
    for accept in (
        f'{MEDIA_TYPE}; profile="https://example.com/profile"',
        f"{MEDIA_TYPE}; ext=x, {MEDIA_TYPE}",
        f"text/html, {MEDIA_TYPE}; q=0.5",
    ):
        response = await client.get("/inventory/7", headers={"Accept": accept})
        one(response, 200, "stock-levels")


async def test_jsonapi_weighted_zero_is_refused_so_plain_json_is_the_answer(
    client: httpx.AsyncClient, db: Database
) -> None:
    """`q` is a weight, not a parameter: q=0 says "not JSON:API" (RFC 9110 §12.4.2)."""
    await make_stock(db, "7", 1)
    for accept in (
        f"application/json, {MEDIA_TYPE};q=0",
        f"{MEDIA_TYPE}; q=0.000, application/json;q=0.5",
        f"{MEDIA_TYPE};q=0, */*",
    ):
        response = await client.get("/inventory/7", headers={"Accept": accept})
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["product_id"] == "7"


async def test_the_events_feed_is_a_list_of_events(client: httpx.AsyncClient) -> None:
    await client.put("/inventory/7", json={"quantity": 5})

    document = jsonapi(await client.get("/events", headers=ACCEPT), 200)
    plain = (await client.get("/events")).json()["items"]

    assert [item["id"] for item in document["data"]] == [event["id"] for event in plain]
    for item, event in zip(document["data"], plain, strict=True):
        attributes = assert_resource(item, "events")
        assert attributes["event_type"] == event["type"]
        assert attributes["data"] == event["data"]


async def test_webhook_endpoints_are_registered_read_and_changed_in_jsonapi(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "data": {
            "type": "webhook-endpoints",
            "attributes": {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        }
    }

    created = await client.post("/webhooks", json=body, headers=SEND)
    endpoint_id, attributes = one(created, 201, "webhook-endpoints")
    listed, next_link = page(await client.get("/webhooks", headers=ACCEPT), "webhook-endpoints")
    patch = {
        "data": {"type": "webhook-endpoints", "id": endpoint_id, "attributes": {"enabled": False}}
    }
    changed = await client.patch(f"/webhooks/{endpoint_id}", json=patch, headers=SEND)
    tested = await client.post(f"/webhooks/{endpoint_id}/test", headers=ACCEPT)
    deliveries = await client.get(f"/webhooks/{endpoint_id}/deliveries", headers=ACCEPT)

    assert attributes["secret"].startswith("whsec_")
    assert (listed, next_link) == ([endpoint_id], None)
    assert one(changed, 200, "webhook-endpoints")[1]["enabled"] is False
    assert one(tested, 202, "events")[1]["event_type"] == "webhook.test"
    assert page(deliveries, "delivery-attempts") == ([], None)


async def test_a_jsonapi_body_names_the_resource_its_path_names(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 3)
    held = await client.post("/reservations", json={"items": [{"product_id": "7", "quantity": 1}]})
    reservation_id = held.json()["id"]

    def extension(resource_id: str) -> dict[str, Any]:
        resource = {"type": "reservations", "id": resource_id, "attributes": {"ttl_seconds": 60}}
        return {"data": resource}

    extended = await client.patch(
        f"/reservations/{reservation_id}", json=extension(reservation_id), headers=SEND
    )
    other = await client.patch(
        f"/reservations/{reservation_id}", json=extension("someone-else"), headers=SEND
    )

    assert one(extended, 200, "reservations")[0] == reservation_id
    error(other, 409, "type-mismatch")


async def test_a_head_in_jsonapi_has_the_headers_of_its_get(
    client: httpx.AsyncClient, db: Database
) -> None:
    await make_stock(db, "7", 1)
    get = await client.get("/inventory/7", headers=ACCEPT)
    head = await client.head("/inventory/7", headers=ACCEPT)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == MEDIA_TYPE
    assert head.headers["content-length"] == str(len(get.content))


def test_every_resource_route_has_its_resource_type(app: FastAPI) -> None:
    """Every route but the operational ones is a resource route, with the types it speaks."""
    operational = {"/health", "/ready", "/metrics"}
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert {r.path for r in routes if not isinstance(r, ResourceRoute)} <= operational
    for route in routes:
        if isinstance(route, ResourceRoute):
            assert route.resource_type
            assert (route.body_type is None) == (route.body_field is None), route.path


async def test_the_key_is_still_required_for_jsonapi_writes(app: FastAPI, db: Database) -> None:
    before = await snapshot(db)
    put = {"data": {"type": "stock-levels", "attributes": {"quantity": 5}}}
    async with client_for(app, **{"X-API-KEY": API_KEY + "x"}) as wrong:
        response = await wrong.put("/inventory/7", json=put, headers=SEND)
    error(response, 401, "unauthorized")
    assert await snapshot(db) == before
