"""The OpenAPI document tells the truth: its examples are valid, each problem response has
examples of its own status and slug, and the request examples work as Swagger UI sends them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from app.api.deps import IF_MATCH_PATTERN
from app.main import create_app
from app.schemas.events import EVENT_ID_PATTERN, EVENT_TYPES
from app.schemas.webhooks import URL_PATTERN
from app.services.cursors import CURSOR_PATTERN, encode_cursor, list_scope
from tests.support.service import make_settings

DOCUMENT = create_app(make_settings("sqlite:///unused-for-openapi.db")).openapi()
METHODS = ("get", "put", "post", "patch", "delete")


def _schemas_with_examples(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (place, schema, example) where a schema carries `examples`, at any depth."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and ("type" in node or "anyOf" in node):
            for example in node["examples"]:
                yield where, node, example
        for key, value in node.items():
            yield from _schemas_with_examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _schemas_with_examples(item, f"{where}/{index}")


def _media_examples() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (place, schema, example) of a request or response body, by media type."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += list(operation["responses"].items())
            for name, body in bodies:
                for media, content in body.get("content", {}).items():
                    place = f"{method.upper()} {path} {name} {media}"
                    if "example" in content:
                        yield place, content["schema"], content["example"]
                    for label, example in content.get("examples", {}).items():
                        yield f"{place} {label}", content["schema"], example["value"]


def _validate(schema: dict[str, Any], example: Any) -> None:
    # `$ref`s point into the document's components, so the schema is checked in its place.
    root = {**schema, "components": DOCUMENT["components"]}
    jsonschema_rs.validator_for(root).validate(example)


def _assert_examples_validate(found: list[tuple[str, dict[str, Any], Any]]) -> None:
    for place, schema, example in found:
        try:
            _validate(schema, example)
        except jsonschema_rs.ValidationError as error:
            pytest.fail(f"{place}: {example!r}: {error}")


def test_every_schema_example_validates_against_its_schema() -> None:
    found = list(_schemas_with_examples(DOCUMENT, "#"))
    assert len(found) > 20
    _assert_examples_validate(found)


def test_every_body_example_validates_against_its_schema() -> None:
    found = list(_media_examples())
    assert len(found) > 40
    _assert_examples_validate(found)


def test_every_documented_error_has_examples_of_its_own_status_and_slug() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                [(media, content)] = response["content"].items()
                if path == "/ready":
                    assert content["example"]["status"] == "unavailable"
                    continue
                assert media == "application/problem+json"
                examples = content["examples"]
                assert examples, (method, path, status)
                for slug, example in examples.items():
                    assert example["value"]["status"] == int(status), (method, path, slug)
                    assert example["value"]["type"] == f"/problems/{slug}"
                    assert f"`{slug}`" in response["description"]


def _problem_slugs(path: str, method: str, status: str) -> set[str]:
    response = DOCUMENT["paths"][path][method]["responses"][status]
    return set(response["content"]["application/problem+json"]["examples"])


def test_each_route_documents_its_own_problems() -> None:
    assert _problem_slugs("/inventory/purchase", "post", "409") == {
        "insufficient-stock",
        "idempotency-key-in-use",
        "type-mismatch",
    }
    assert _problem_slugs("/inventory/purchase", "post", "422") == {
        "validation-error",
        "unknown-product",
        "idempotency-key-reuse",
    }
    assert _problem_slugs("/inventory/purchase", "post", "503") == {
        "overloaded",
        "database-unavailable",
        "products-unavailable",
    }
    assert "409" not in DOCUMENT["paths"]["/inventory/{product_id}"]["get"]["responses"]
    # A 503 says when to come back; a 401 how to authenticate.
    purchase = DOCUMENT["paths"]["/inventory/purchase"]["post"]["responses"]
    assert "Retry-After" in purchase["503"]["headers"]
    assert "Retry-After" in purchase["409"]["headers"]
    assert "WWW-Authenticate" in purchase["401"]["headers"]


def test_the_problem_schema_has_no_placeholder_shapes() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert problem["properties"]["status"]["minimum"] == 400
    items = problem["properties"]["items"]["anyOf"][0]["items"]
    assert items == {"$ref": "#/components/schemas/ShortLine"}


def test_the_document_states_the_rules_the_service_enforces() -> None:
    adjustment = DOCUMENT["components"]["schemas"]["Adjustment"]
    assert adjustment["required"] == ["delta", "reason"]
    assert adjustment["properties"]["delta"]["not"] == {"const": 0}
    parameters = DOCUMENT["paths"]["/inventory/{product_id}"]["put"]["parameters"]
    [if_match] = [p for p in parameters if p["name"].lower() == "if-match"]
    assert if_match["schema"]["pattern"] == IF_MATCH_PATTERN
    [product_id] = [p for p in parameters if p["name"] == "product_id"]
    # A string with a pattern (Swagger UI shows a schema with `not` as "never").
    assert product_id["schema"]["type"] == "string"
    assert "not" not in product_id["schema"]
    pattern = product_id["schema"]["pattern"]
    assert [
        re.search(pattern, i) is not None for i in ("42", "purchase", "purchases", "purchase1")
    ] == [True, False, False, True]


def _first_request_example(path: str, method: str) -> Any:
    content = DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return DOCUMENT["components"]["schemas"][ref]["examples"][0]


async def test_the_request_examples_work_after_the_readme_first_steps(
    client: httpx.AsyncClient,
) -> None:
    """As Swagger UI sends them unchanged, with the path example `42`, after the README's
    first `PUT` and adjustment."""
    await client.put("/inventory/42", json={"quantity": 17, "reason": "delivery"})
    await client.post(
        "/inventory/42/adjustments", json={"delta": -2, "reason": "damaged in transit"}
    )

    bought = await client.post(
        "/inventory/purchase", json=_first_request_example("/inventory/purchase", "post")
    )
    adjusted = await client.post(
        "/inventory/42/adjustments",
        json=_first_request_example("/inventory/{product_id}/adjustments", "post"),
    )
    put = await client.put(
        "/inventory/42", json=_first_request_example("/inventory/{product_id}", "put")
    )

    assert bought.status_code == 201, bought.text
    assert adjusted.status_code == 200, adjusted.text
    assert put.status_code == 200, put.text


def test_the_app_title_mentions_jsonapi(app: FastAPI) -> None:
    assert "application/vnd.api+json" in app.openapi()["info"]["description"]


def test_no_parameter_is_documented_as_nullable() -> None:
    """A header or a query parameter is absent or a string; documented as "or null", it
    gets sent as the text `null`."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                assert "null" not in str(parameter["schema"]), (method, path, parameter)


def _parameter(path: str, method: str, name: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = DOCUMENT["paths"][path][method]["parameters"]
    [parameter] = [p for p in parameters if p["name"].lower() == name]
    return parameter


def test_the_document_states_the_shapes_of_what_the_service_issues() -> None:
    assert _parameter("/events", "get", "after")["schema"]["pattern"] == EVENT_ID_PATTERN
    cursor = _parameter("/inventory", "get", "cursor")["schema"]
    assert cursor["pattern"] == CURSOR_PATTERN
    assert _parameter("/inventory/{product_id}", "put", "if-none-match")["schema"]["const"] == "*"
    assert _parameter("/inventory/{product_id}", "delete", "if-match")["schema"]["format"] == "etag"
    webhook = DOCUMENT["components"]["schemas"]["WebhookIn"]["properties"]
    assert webhook["url"]["pattern"] == URL_PATTERN
    assert set(webhook["events"]["items"]["enum"]) == {*EVENT_TYPES, "*"}
    deletion = DOCUMENT["paths"]["/inventory/{product_id}"]["delete"]["responses"]
    assert _problem_slugs("/inventory/{product_id}", "delete", "409") == {"insufficient-stock"}
    assert "412" in deletion


def test_issued_values_match_their_documented_patterns() -> None:
    """What the service hands out passes back through the document's own rules."""
    assert re.fullmatch(CURSOR_PATTERN, encode_cursor(list_scope("x"), 1))
    assert re.fullmatch(EVENT_ID_PATTERN, "evt_00000000000002f10000000000000a1c")
    # JSON Schema patterns are searched, not matched whole.
    assert re.search(URL_PATTERN, "https://shop.example/hooks/inventory")


def test_every_link_names_an_operation_and_its_parameter() -> None:
    operations = {
        operation["operationId"]: operation
        for methods in DOCUMENT["paths"].values()
        for operation in methods.values()
    }
    links = [
        (source, link)
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
        for response in operation["responses"].values()
        for source in [f"{method.upper()} {path}"]
        for link in response.get("links", {}).values()
    ]
    sources = {source for source, _ in links}
    assert sources == {"POST /webhooks", "POST /inventory/purchase", "POST /reservations"}
    assert len(links) == 11
    for source, link in links:
        target = operations[link["operationId"]]
        names = {parameter["name"] for parameter in target["parameters"]}
        assert set(link["parameters"]) <= names, (source, link)
