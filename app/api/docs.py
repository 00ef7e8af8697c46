"""OpenAPI descriptions of the problem responses each route may give, each with its own
example, built from the error the service really raises."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import HTMLResponse, Response

from app.api import jsonapi
from app.api.routing import body_types
from app.core.errors import (
    PROBLEM_MEDIA_TYPE,
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReuse,
    InsufficientStock,
    MalformedJson,
    NotAcceptable,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ProblemError,
    ProductsUnavailable,
    ReservationNotActive,
    TypeMismatch,
    Unauthorized,
    UnknownProduct,
    UnsupportedMediaType,
    ValidationFailed,
    VersionMismatch,
    problem_body,
)
from app.schemas.common import Problem
from app.schemas.events import EVENT_ID_PATTERN

EXAMPLE_REQUEST_ID = "0b5e8f0c2d1a4c3e9f7a6b5d4c3b2a19"

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`ApiKey`: send the key in `X-API-KEY`.",
            "schema": {"type": "string"},
        }
    },
    503: _RETRY_AFTER,
}


def _unsupported_media_type() -> ProblemError:
    try:
        jsonapi.body_is_jsonapi("text/plain")
    except UnsupportedMediaType as refused:
        return refused
    raise AssertionError("text/plain is refused")


# Every problem a route may document, by slug: the error as raised, and when it happens.
_PROBLEMS: dict[str, tuple[ProblemError, str]] = {
    "malformed-json": (
        MalformedJson(
            "The request body is not valid JSON.",
            reason="Invalid JSON: Expecting ',' delimiter: line 1 column 16 (char 15)",
        ),
        "The body is not RFC 8259 JSON: empty, cut, `NaN`, a BOM, not UTF-8.",
    ),
    "unauthorized": (
        Unauthorized("A valid X-API-KEY header is required."),
        "Missing or wrong `X-API-KEY`.",
    ),
    "not-found": (NotFound("No stock level for product '42'."), "No such resource."),
    "not-acceptable": (
        NotAcceptable(f"{jsonapi.MEDIA_TYPE} is accepted only without parameters."),
        f"`Accept` names only `{jsonapi.MEDIA_TYPE}` variants with unsupported parameters.",
    ),
    "insufficient-stock": (
        InsufficientStock(
            "Not enough stock for every line; nothing was taken.",
            items=[{"product_id": "42", "requested": 20, "available": 15}],
        ),
        "Stock cannot cover every line, or (forgetting a stock level) reservations still "
        "hold some of it; nothing was changed.",
    ),
    "idempotency-key-in-use": (
        IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress.",
            headers={"Retry-After": "1"},
        ),
        "The first request with this `Idempotency-Key` is still running.",
    ),
    "type-mismatch": (
        TypeMismatch("This route takes 'stock-levels' resources, not 'purchases'."),
        "A JSON:API body's `type` or `id` is not the one this route takes.",
    ),
    "version-mismatch": (
        VersionMismatch("The stock level of '42' is not at the version you named."),
        "The stock level is not at the version named by `If-Match`, or `If-None-Match: *` "
        "found it already there.",
    ),
    "payload-too-large": (
        PayloadTooLarge("Request bodies are limited to 1048576 bytes."),
        "Request body over 1 MiB.",
    ),
    "unsupported-media-type": (
        _unsupported_media_type(),
        "The body was not sent as `application/json` (or `application/vnd.api+json`).",
    ),
    "validation-error": (
        ValidationFailed(
            "The request is not valid.",
            errors=[
                {
                    "field": "items.0.quantity",
                    "message": "Input should be greater than or equal to 1",
                }
            ],
        ),
        "The request is well-formed JSON but breaks a rule of its schema.",
    ),
    "unknown-product": (
        UnknownProduct("The products service does not know '999'.", product_ids=["999"]),
        "The products service does not know a product; nothing was changed.",
    ),
    "idempotency-key-reuse": (
        IdempotencyKeyReuse(
            "This Idempotency-Key was used with a different request.", idempotency_key="order-1001"
        ),
        "The `Idempotency-Key` was used before with a different body.",
    ),
    "reservation-not-active": (
        ReservationNotActive("Reservation 'a1b2…' is released; it holds nothing."),
        "The reservation was released, expired or confirmed: it holds nothing to act on.",
    ),
    "overloaded": (
        Overloaded("More than 1000 requests are in progress; try again shortly.", retry_after=1),
        "Too many requests in progress: shed at once rather than queued.",
    ),
    "products-unavailable": (
        ProductsUnavailable(
            "The products service cannot answer for '42'; nothing was changed.",
            retry_after=2,
            product_ids=["42"],
        ),
        "The products service cannot answer now; nothing was changed.",
    ),
    "database-unavailable": (
        DatabaseUnavailable("The database cannot answer right now."),
        "The database cannot answer now.",
    ),
}

# What every /inventory route may answer, and what every route with a body may add.
INVENTORY = (
    "unauthorized",
    "not-acceptable",
    "validation-error",
    "overloaded",
    "database-unavailable",
)
WITH_BODY = ("malformed-json", "unsupported-media-type", "payload-too-large", "type-mismatch")


def problem_example(slug: str) -> dict[str, Any]:
    return problem_body(_PROBLEMS[slug][0], EXAMPLE_REQUEST_ID)


def operation_id(route: APIRoute) -> str:
    """The route function's name (`get_stock_level`), short enough for Swagger UI's Links
    column, rather than FastAPI's name-path-method concatenation."""
    return route.name


# Ids the service issues are random, so no example can name an existing one: a path
# parameter of such an id is filled with this, and Swagger UI's "Execute" gets a 404.
EXAMPLE_UUID = "3f2c9a4e-8d1b-4c6a-9e0f-5b7d2a1c4e8f"

# Where a route's problem differs from the generic example of its slug: the detail the
# route really gives, for the state the README's first steps leave (product 42: 17 on hand,
# 2 of them held by a reservation).
_HELD = "Only 15 of '42' available: 2 are held by reservations."
_RESERVED_ID = "'purchase' names the purchase routes; it cannot be a product id"
_AT_LEAST_1 = "Input should be greater than or equal to 1"

# The field and message of each route's own `validation-error` example.
_INVALID: dict[str, tuple[str, str]] = {
    "list_stock_levels": ("limit", _AT_LEAST_1),
    "get_stock_level": ("product_id", _RESERVED_ID),
    "set_stock_level": ("quantity", "Input should be greater than or equal to 0"),
    "delete_stock_level": ("product_id", _RESERVED_ID),
    "adjust_stock_level": ("delta", "must not be zero"),
    "list_movements": ("product_id", _RESERVED_ID),
    "buy": ("items.0.quantity", _AT_LEAST_1),
    "create_reservation": ("ttl_seconds", _AT_LEAST_1),
    "list_reservations": (
        "status",
        "Input should be 'active', 'confirmed', 'released' or 'expired'",
    ),
    "extend_reservation": ("ttl_seconds", _AT_LEAST_1),
    "confirm_reservation": ("Idempotency-Key", "String should have at most 255 characters"),
    "list_events": ("after", f"String should match pattern '{EVENT_ID_PATTERN}'"),
    "create_webhook": ("events", "List should have at least 1 item after validation, not 0"),
    "list_webhooks": ("limit", _AT_LEAST_1),
    "update_webhook": ("enabled", "Input should be a valid boolean"),
    "list_deliveries": ("limit", _AT_LEAST_1),
}

# Where a route's problem differs from the generic example of its slug: the detail the
# route really gives, for the state the README's first steps leave and a hold of 2 units
# (product 42: 17 on hand, 2 of them held). tests/docs provoke each one.
_ROUTE_PROBLEMS: dict[str, dict[str, ProblemError]] = defaultdict(dict) | {
    name: {
        "validation-error": ValidationFailed(
            "The request is not valid.", errors=[{"field": field, "message": message}]
        )
    }
    for name, (field, message) in _INVALID.items()
}
for name, requested in (
    ("set_stock_level", 16),
    ("adjust_stock_level", 16),
    ("delete_stock_level", 17),
):
    _ROUTE_PROBLEMS[name]["insufficient-stock"] = InsufficientStock(
        _HELD, items=[{"product_id": "42", "requested": requested, "available": 15}]
    )
_ROUTE_PROBLEMS["list_movements"]["not-found"] = NotFound("Product '42' has no stock history.")
_ROUTE_PROBLEMS["create_reservation"]["insufficient-stock"] = InsufficientStock(
    "Not enough stock available for every line; nothing was held.",
    items=[{"product_id": "42", "requested": 20, "available": 15}],
)
for name in ("get_purchase", "cancel_purchase"):
    _ROUTE_PROBLEMS[name]["not-found"] = NotFound(f"No purchase {EXAMPLE_UUID!r}.")
for name, state, verb in (
    ("extend_reservation", "released", "extended"),
    ("confirm_reservation", "released", "confirmed"),
    ("release_reservation", "confirmed", "released"),
    ("get_reservation", None, None),
):
    _ROUTE_PROBLEMS[name]["not-found"] = NotFound(f"No reservation {EXAMPLE_UUID!r}.")
    if state is not None:
        _ROUTE_PROBLEMS[name]["reservation-not-active"] = ReservationNotActive(
            f"Reservation {EXAMPLE_UUID!r} is {state}: it cannot be {verb}.",
            reservation_status=state,
        )
for name in (
    "get_webhook",
    "update_webhook",
    "delete_webhook",
    "list_deliveries",
    "send_test_event",
):
    _ROUTE_PROBLEMS[name]["not-found"] = NotFound(f"No webhook endpoint {EXAMPLE_UUID!r}.")

_STOCK_LEVEL: dict[str, Any] = {
    "product_id": "42",
    "quantity": 17,
    "reserved": 0,
    "available": 17,
    "low_stock_threshold": None,
    "version": 1,
    "created_at": "2026-11-28T10:15:00Z",
    "updated_at": "2026-11-28T10:15:00Z",
    "product": {"id": "42", "name": "Towel", "price": 12.9},
}
# Answers whose example differs by status: a PUT that creates asks the products service and
# shows the product; one that updates does not ask, so its `product` is null.
_ANSWERS: dict[str, dict[str, dict[str, Any]]] = {
    "set_stock_level": {
        "201": _STOCK_LEVEL,
        "200": {
            **_STOCK_LEVEL,
            "quantity": 20,
            "reserved": 2,
            "available": 18,
            "version": 3,
            "updated_at": "2026-11-28T11:02:41Z",
            "product": None,
        },
    },
}


def _type_mismatch(resource_type: str | None) -> ProblemError | None:
    """What a route whose body carries `resource_type` answers to a JSON:API body of another
    type; None when the route reads no JSON:API body, so it cannot answer `type-mismatch`."""
    if resource_type is None:
        return None
    other = "purchases" if resource_type == "stock-levels" else "stock-levels"
    try:
        jsonapi.unwrap({"data": {"type": other}}, resource_type=resource_type, resource_id=None)
    except TypeMismatch as mismatch:
        return mismatch
    raise AssertionError(f"{resource_type} takes {other}")


def _own_problems(body_type: str | None, operation: dict[str, Any]) -> None:
    """Each problem example as this route gives it (see `_ROUTE_PROBLEMS`); a problem the
    route cannot give is taken out."""
    overrides: dict[str, ProblemError | None] = {
        "type-mismatch": _type_mismatch(body_type),
        **_ROUTE_PROBLEMS.get(operation["operationId"], {}),
    }
    if not _reads_checked_input(operation):
        overrides["validation-error"] = None
    responses = operation.get("responses", {})
    for status in list(responses):
        content = responses[status].get("content", {}).get(PROBLEM_MEDIA_TYPE)
        if content is None:
            continue
        examples = content["examples"]
        for slug in [slug for slug in examples if slug in overrides]:
            error = overrides[slug]
            if error is None:
                del examples[slug]
            else:
                examples[slug]["value"] = problem_body(error, EXAMPLE_REQUEST_ID)
        responses[status]["description"] = _description(list(examples))
        if not examples:
            del responses[status]


_CHECKS = frozenset({"pattern", "minLength", "maxLength", "minimum", "maximum", "enum"})


def _reads_checked_input(operation: dict[str, Any]) -> bool:
    """Whether anything the route reads can be refused as invalid: a body, a query or header
    parameter, or a path parameter with a shape. An id of any shape is looked up (404)."""
    return "requestBody" in operation or any(
        parameter["in"] != "path" or _CHECKS & set(parameter["schema"])
        for parameter in operation.get("parameters", [])
    )


def problems(*slugs: str) -> dict[int | str, dict[str, Any]]:
    """The documented responses of these problems, one per status, an example per problem."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in _by_status(slugs):
        response: dict[str, Any] = {
            # `model` puts Problem into the document's components; FastAPI also files it under
            # application/json, which `finish_document` takes out again.
            "model": Problem,
            "description": _description(group),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {
                        slug: {"summary": _PROBLEMS[slug][0].title, "value": problem_example(slug)}
                        for slug in group
                    },
                }
            },
        }
        headers = {
            **_HEADERS.get(status, {}),
            **(_RETRY_AFTER if "idempotency-key-in-use" in group else {}),
        }
        if headers:
            response["headers"] = headers
        responses[status] = response
    return responses


def _description(slugs: Sequence[str]) -> str:
    return " ".join(f"`{slug}`: {_PROBLEMS[slug][1]}" for slug in slugs)


def _by_status(slugs: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    statuses = sorted({_PROBLEMS[slug][0].status for slug in slugs})
    for status in statuses:
        yield status, [slug for slug in dict.fromkeys(slugs) if _PROBLEMS[slug][0].status == status]


def links_to(parameter: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links from a created resource to the operations that take its `id` as
    `parameter`: how a client (or a fuzzer) goes on from the answer."""
    return {
        operation_id: {
            "operationId": operation_id,
            "parameters": {parameter: "$response.body#/id"},
        }
        for operation_id in operation_ids
    }


# Header parameters declared once for many routes, and the kind of value they take
# (`format`), which tools that generate requests can be told how to draw.
_PARAMETER_FORMATS = {"if-match": "etag"}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return schema
    [value] = [option for option in options if option != {"type": "null"}]
    rest = {name: part for name, part in schema.items() if name != "anyOf"}
    return {**value, **rest}


def finish_document(app: FastAPI, *, examples_of: Sequence[type[BaseModel]]) -> None:
    """Problem responses are documented as `application/problem+json` only, as they are sent,
    and the examples of `examples_of` are put back whole.

    FastAPI drops every null from the document it generates, examples included, and an
    example without its `"cancelled_at": null` no longer matches its own schema. It also
    documents an optional header or query parameter as "a string or null", and a generated
    request then sends the text `null`: a parameter is absent or a string, never null.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            types = body_types(app.routes)
            schemas = document.get("components", {}).get("schemas", {})
            for model in examples_of:
                schemas[model.__name__]["examples"] = model.model_json_schema()["examples"]
            for path, operations in document.get("paths", {}).items():
                for method, operation in operations.items():
                    for parameter in operation.get("parameters", []):
                        parameter["schema"] = _without_null(parameter["schema"])
                        if parameter["name"] in _PARAMETER_FORMATS:
                            parameter["schema"]["format"] = _PARAMETER_FORMATS[parameter["name"]]
                        if parameter["in"] == "path":
                            # Swagger UI fills "Try it out" from the parameter's own
                            # example, never from its schema's.
                            parameter["example"] = parameter["schema"].get(
                                "examples", [EXAMPLE_UUID]
                            )[0]
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if PROBLEM_MEDIA_TYPE in content:
                            content.pop("application/json", None)
                    _own_problems(types.get(f"{method.upper()} {path}"), operation)
                    for status, example in _ANSWERS.get(operation["operationId"], {}).items():
                        operation["responses"][status]["content"]["application/json"]["example"] = (
                            example
                        )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# The assets fastapi-offline serves, and what the ReDoc page may load: only this service's
# own scripts, styles and images.
STATIC_DOCS = "/static-offline-docs"
REDOC_BUNDLE = f"{STATIC_DOCS}/redoc.offline.js"
# ReDoc's sidebar always shows Redocly's logo from their CDN: the bundle is served with that
# address replaced by an empty image, which the sidebar then leaves out.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; worker-src 'self' blob:; connect-src 'self'"
)


@cache
def _redoc_bundle() -> bytes:
    bundle = files("fastapi_offline").joinpath("static", "redoc.standalone.js").read_bytes()
    return bundle.replace(_REDOC_LOGO, b"data:,")


def add_redoc(app: FastAPI) -> None:
    """`/redoc`, served by the service with assets of its own and nothing from elsewhere."""

    async def redoc_bundle() -> Response:
        return Response(_redoc_bundle(), media_type="text/javascript")

    app.add_api_route(REDOC_BUNDLE, redoc_bundle, include_in_schema=False)
    # fastapi-offline's static mount would answer under its prefix first: this one goes
    # before it.
    app.router.routes.insert(0, app.router.routes.pop())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_BUNDLE}",
            redoc_favicon_url=f"{root}{STATIC_DOCS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page
