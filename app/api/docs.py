"""OpenAPI descriptions of the problem responses each route may give."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.schemas.common import Problem

_DESCRIPTIONS = {
    400: "The body is not RFC 8259 JSON: empty, cut, `NaN`, a BOM, not UTF-8 (`malformed-json`).",
    401: "Missing or wrong `X-API-KEY` (`unauthorized`).",
    404: "No such resource (`not-found`).",
    409: "Conflict: `insufficient-stock` or `idempotency-key-in-use`.",
    412: "The resource is not at the version named by `If-Match` (`version-mismatch`).",
    413: "Request body over 1 MiB (`payload-too-large`).",
    422: "Invalid request (`validation-error`, `unknown-product` or `idempotency-key-reuse`).",
    503: "A dependency cannot answer (`products-unavailable` or `database-unavailable`).",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # `model` puts Problem into the document's components; FastAPI also files it under
    # application/json, which `describe_problems_as_problem_json` takes out again.
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def describe_problems_as_problem_json(app: FastAPI) -> None:
    """Problem responses are documented as `application/problem+json` only, as they are sent."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if PROBLEM_MEDIA_TYPE in content:
                            content.pop("application/json", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
