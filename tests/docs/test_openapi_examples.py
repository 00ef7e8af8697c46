"""The OpenAPI document's examples, used as Swagger UI uses them.

Each operation's "Try it out → Execute", unchanged, gets a status the document lists for it
on a service prepared by the README's first step; and each problem example a route shows is
the problem that route really gives (provoked here and compared, field for field).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.docs import EXAMPLE_UUID
from app.api.routing import body_types
from app.main import create_app
from tests.docs import runner
from tests.support.service import make_settings

_APP = create_app(make_settings("sqlite:///unused-for-openapi.db"))
DOCUMENT = _APP.openapi()
REQUEST_TYPES = body_types(_APP.routes)
METHODS = ("get", "put", "post", "patch", "delete")


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every operation, deletions last (as someone trying the page would, so that the others
    still find product 42)."""
    found = [
        (path, method, operation)
        for path, operations in DOCUMENT["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
    ]
    yield from sorted(found, key=lambda item: item[1] == "delete")


def _component(reference: str) -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][reference.rsplit("/", 1)[-1]]
    return schema


def swagger_request(
    http: httpx.Client, path: str, method: str, operation: dict[str, Any]
) -> httpx.Request:
    """What Swagger UI sends when "Execute" is pressed with what the page filled in: each
    parameter's own example (or its default), and the body example."""
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        value = parameter.get("example", parameter["schema"].get("default"))
        if value in (None, [], ""):
            continue
        if parameter["in"] == "path":
            assert value is not None, f"{method.upper()} {path}: {parameter['name']} is empty"
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query":
            query[parameter["name"]] = str(value).lower() if isinstance(value, bool) else str(value)
        elif parameter["in"] == "header":
            headers[parameter["name"]] = str(value)
    body = None
    if "requestBody" in operation:
        content = operation["requestBody"]["content"]["application/json"]
        if "example" in content:
            body = content["example"]
        else:
            body = _component(content["schema"]["$ref"])["examples"][0]
    return http.build_request(method.upper(), path, params=query, headers=headers, json=body)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service as `make run` starts it, after the README walkthrough's first step."""
    home: Path = tmp_path_factory.mktemp("swagger")
    readme = runner.read(runner.PROJECT_ROOT / "README.md")
    first_step = [command for command in readme.commands if command.block == 0]
    assert first_step
    with runner.Service(home, runner.clean_env(home, LOG_LEVEL="WARNING")) as service:
        shell = runner.Shell(runner.clean_env(home), {runner.SERVICE: f"127.0.0.1:{service.port}"})
        for command in first_step:
            shell.run(command)
        yield service.url


def test_every_execute_gets_a_documented_answer(prepared: str) -> None:
    answered: dict[str, int] = {}
    with httpx.Client(base_url=prepared, timeout=30) as http:
        for path, method, operation in _operations():
            response = http.send(swagger_request(http, path, method, operation))
            where = f"{method.upper()} {path} ({operation['operationId']})"
            assert str(response.status_code) in operation["responses"], (where, response.text)
            answered[operation["operationId"]] = response.status_code
    # What the first step makes possible works, rather than just failing as documented.
    assert {name: answered[name] for name in _SUCCEEDS} == _SUCCEEDS


_SUCCEEDS = {
    "health": 200,
    "ready": 200,
    "read_metrics": 200,
    "list_stock_levels": 200,
    "get_stock_level": 200,
    "set_stock_level": 200,
    "adjust_stock_level": 200,
    "list_movements": 200,
    "buy": 201,
    "create_reservation": 201,
    "list_reservations": 200,
    "list_events": 200,
    "list_webhooks": 200,
    # The hold that create_reservation's example made still holds 2 units.
    "delete_stock_level": 409,
    # Ids the service makes are random: the page's example id names nothing.
    "get_purchase": 404,
    "confirm_reservation": 404,
    "get_webhook": 404,
}


def test_path_parameters_are_filled_and_product_ids_are_plain_strings() -> None:
    for path, method, operation in _operations():
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "example" in parameter, (method, path, parameter["name"])
            if parameter["name"] == "product_id":
                schema = parameter["schema"].get("items", parameter["schema"])
                assert schema["type"] == "string"
                assert "not" not in schema


def test_operation_ids_are_the_route_names() -> None:
    ids = [operation["operationId"] for _, _, operation in _operations()]
    assert len(set(ids)) == len(ids)
    assert {"buy", "get_stock_level"} <= set(ids)
    assert max(map(len, ids)) <= 20


# How to make each route give the problems whose examples it shows, by operation and slug:
# (method, path, JSON body). Run in this order on one service, after `_PREPARE`.
_NOT_FOUND = {
    "get_stock_level": ("GET", "/inventory/42", None),
    "delete_stock_level": ("DELETE", "/inventory/42", None),
    "adjust_stock_level": ("POST", "/inventory/42/adjustments", {"delta": 1, "reason": "x"}),
    "list_movements": ("GET", "/inventory/42/movements", None),
    "get_purchase": ("GET", f"/inventory/purchases/{EXAMPLE_UUID}", None),
    "cancel_purchase": ("POST", f"/inventory/purchases/{EXAMPLE_UUID}/cancel", None),
    "get_reservation": ("GET", f"/reservations/{EXAMPLE_UUID}", None),
    "extend_reservation": ("PATCH", f"/reservations/{EXAMPLE_UUID}", {"ttl_seconds": 60}),
    "confirm_reservation": ("POST", f"/reservations/{EXAMPLE_UUID}/confirm", None),
    "release_reservation": ("POST", f"/reservations/{EXAMPLE_UUID}/release", None),
    "get_webhook": ("GET", f"/webhooks/{EXAMPLE_UUID}", None),
    "update_webhook": ("PATCH", f"/webhooks/{EXAMPLE_UUID}", {"enabled": False}),
    "delete_webhook": ("DELETE", f"/webhooks/{EXAMPLE_UUID}", None),
    "list_deliveries": ("GET", f"/webhooks/{EXAMPLE_UUID}/deliveries", None),
    "send_test_event": ("POST", f"/webhooks/{EXAMPLE_UUID}/test", None),
}
_INVALID = {
    "list_stock_levels": ("GET", "/inventory?limit=0", None),
    "get_stock_level": ("GET", "/inventory/purchase", None),
    "set_stock_level": ("PUT", "/inventory/42", {"quantity": -1}),
    "delete_stock_level": ("DELETE", "/inventory/purchase", None),
    "adjust_stock_level": ("POST", "/inventory/42/adjustments", {"delta": 0, "reason": "x"}),
    "list_movements": ("GET", "/inventory/purchase/movements", None),
    "buy": ("POST", "/inventory/purchase", {"items": [{"product_id": "42", "quantity": 0}]}),
    "create_reservation": (
        "POST",
        "/reservations",
        {"items": [{"product_id": "42", "quantity": 1}], "ttl_seconds": 0},
    ),
    "list_reservations": ("GET", "/reservations?status=bogus", None),
    "extend_reservation": ("PATCH", f"/reservations/{EXAMPLE_UUID}", {"ttl_seconds": 0}),
    "confirm_reservation": ("POST", f"/reservations/{EXAMPLE_UUID}/confirm", None),
    "list_events": ("GET", "/events?after=bogus", None),
    "create_webhook": ("POST", "/webhooks", {"url": "https://shop.example/hooks", "events": []}),
    "list_webhooks": ("GET", "/webhooks?limit=0", None),
    "update_webhook": ("PATCH", f"/webhooks/{EXAMPLE_UUID}", {"enabled": "yes"}),
    "list_deliveries": ("GET", f"/webhooks/{EXAMPLE_UUID}/deliveries?limit=0", None),
}
# What the route reads besides its body: a key longer than the 255 characters a key may have.
_INVALID_HEADERS = {"confirm_reservation": {"Idempotency-Key": "k" * 256}}
_SHORT = {
    "set_stock_level": ("PUT", "/inventory/42", {"quantity": 1}),
    "adjust_stock_level": ("POST", "/inventory/42/adjustments", {"delta": -16, "reason": "x"}),
    "delete_stock_level": ("DELETE", "/inventory/42", None),
    "buy": ("POST", "/inventory/purchase", {"items": [{"product_id": "42", "quantity": 20}]}),
    "create_reservation": (
        "POST",
        "/reservations",
        {"items": [{"product_id": "42", "quantity": 20}]},
    ),
}
# Slugs whose examples must be what the route gives; the others (401, 413, 503 …) are the
# same problem on every route.
PROVOKED = {"not-found", "validation-error", "insufficient-stock", "type-mismatch",
            "reservation-not-active"}  # fmt: skip


def _examples() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(operation id, method, path, example) of every provoked problem example."""
    for path, method, operation in _operations():
        for response in operation["responses"].values():
            content = response.get("content", {}).get("application/problem+json", {})
            for slug, example in content.get("examples", {}).items():
                if slug in PROVOKED:
                    yield operation["operationId"], method.upper(), path, example["value"]


def _same_problem(response: httpx.Response, example: dict[str, Any], real_id: str) -> None:
    got = {key: value for key, value in response.json().items() if key != "request_id"}
    shown = {key: value for key, value in example.items() if key != "request_id"}
    shown = _with_id(shown, real_id)
    assert got == shown


def _with_id(value: Any, real_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(EXAMPLE_UUID, real_id)
    if isinstance(value, dict):
        return {key: _with_id(item, real_id) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_id(item, real_id) for item in value]
    return value


async def _send(
    client: httpx.AsyncClient, request: tuple[str, str, Any], **kwargs: Any
) -> httpx.Response:
    method, url, body = request
    return await client.request(method, url, json=body, **kwargs)


async def test_each_problem_example_is_what_its_route_answers(client: httpx.AsyncClient) -> None:
    examples = list(_examples())
    by_slug: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    for found in examples:
        by_slug.setdefault(found[3]["type"].removeprefix("/problems/"), []).append(found)
    checked = 0

    for name, _, _, example in by_slug["not-found"]:
        _same_problem(await _send(client, _NOT_FOUND[name]), example, EXAMPLE_UUID)
        checked += 1
    for name, _, _, example in by_slug["validation-error"]:
        answer = await _send(client, _INVALID[name], headers=_INVALID_HEADERS.get(name))
        _same_problem(answer, example, EXAMPLE_UUID)
        checked += 1

    # The README's first step, and a hold of 2: 42 has 17 on hand, 15 available.
    await client.put("/inventory/42", json={"quantity": 17, "reason": "delivery"})
    held = await client.post("/reservations", json={"items": [{"product_id": "42", "quantity": 2}]})
    for name, _, _, example in by_slug["insufficient-stock"]:
        _same_problem(await _send(client, _SHORT[name]), example, EXAMPLE_UUID)
        checked += 1
    for _, method, path, example in by_slug["type-mismatch"]:
        resource_type = REQUEST_TYPES[f"{method} {path}"]
        other = "purchases" if resource_type == "stock-levels" else "stock-levels"
        response = await client.request(
            method,
            path.replace("{product_id}", "42").replace("{reservation_id}", EXAMPLE_UUID),
            content=f'{{"data": {{"type": "{other}", "attributes": {{}}}}}}',
            headers={"Content-Type": "application/vnd.api+json"},
        )
        _same_problem(response, example, EXAMPLE_UUID)
        checked += 1

    released = (
        await client.post("/reservations", json={"items": [{"product_id": "42", "quantity": 1}]})
    ).json()["id"]
    await client.post(f"/reservations/{released}/release")
    confirmed = held.json()["id"]
    await client.post(f"/reservations/{confirmed}/confirm")
    for name, _, _, example in by_slug["reservation-not-active"]:
        reservation = confirmed if example["reservation_status"] == "confirmed" else released
        method, url, body = _NOT_FOUND[name]
        response = await client.request(method, url.replace(EXAMPLE_UUID, reservation), json=body)
        _same_problem(response, example, reservation)
        checked += 1

    assert checked == len(examples) > 40
