"""Every error leaves the service as problem+json: one renderer, one handler per error family."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.core.context import request_id_var
from app.core.database import is_unavailable
from app.core.errors import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    DatabaseUnavailable,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    ProblemError,
    ValidationFailed,
    problem_body,
)


def problem_response(error: ProblemError) -> JSONResponse:
    return JSONResponse(
        problem_body(error, request_id_var.get()),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def field_path(location: tuple[int | str, ...] | list[int | str]) -> str:
    """`("body", "items", 0, "quantity")` → `items.0.quantity`."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or "body"


def validation_problem(errors: list[dict[str, Any]]) -> ProblemError:
    invalid = [error for error in errors if error.get("type") == "json_invalid"]
    if invalid:
        reason = (invalid[0].get("ctx") or {}).get("error")
        return MalformedJson(
            "The request body is not valid JSON.",
            reason=f"Invalid JSON: {reason}" if reason else "Invalid JSON",
        )
    return ValidationFailed(
        "The request is not valid.",
        errors=[{"field": field_path(e["loc"]), "message": _message(e)} for e in errors],
    )


def _message(error: dict[str, Any]) -> str:
    """Pydantic's message, without the "Value error, " it puts before our validators' own."""
    if error.get("type") == "value_error" and "error" in (error.get("ctx") or {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


async def _on_problem(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ProblemError)
    return problem_response(error)


async def _on_validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return problem_response(validation_problem(list(error.errors())))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path; Starlette names only the first route's."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            # HEAD is answered wherever GET is (HeadMiddleware).
            route.matches({**request.scope, "method": "GET" if method == "HEAD" else method})[0]
            is Match.FULL
            for route in routes
        )
    ]
    return ", ".join(allowed)


async def _on_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    problem: ProblemError
    if error.status_code == 404:
        problem = NotFound("No such resource.")
    elif error.status_code == 405:
        problem = MethodNotAllowed(
            f"{request.method} is not allowed here.", headers={"Allow": _allowed_methods(request)}
        )
    elif error.status_code == 400:
        # FastAPI's answer to a body it could not decode: malformed JSON like any other.
        problem = MalformedJson("The request body could not be decoded.", reason=str(error.detail))
    elif error.status_code < 500:
        problem = BadRequest(str(error.detail), headers=dict(error.headers or {}))
    else:
        problem = ProblemError("The service failed to answer.")
    return problem_response(problem)


async def _on_database(_: Request, error: Exception) -> JSONResponse:
    """A backstop for database errors raised outside `Database`, which translates its own."""
    assert isinstance(error, DBAPIError)
    if is_unavailable(error):
        return problem_response(DatabaseUnavailable("The database cannot answer right now."))
    raise error


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(DBAPIError, _on_database)
