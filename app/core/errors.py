"""Domain errors that know their problem type, and the problem+json document they render to."""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An outcome the caller is told about as an RFC 9457 problem."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


class ValidationFailed(ProblemError):
    status, slug, title = 422, "validation-error", "Validation error"

    def __init__(self, detail: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(detail, errors=errors)


class MalformedJson(ProblemError):
    """A body that is not RFC 8259 JSON: empty, cut, `NaN`, a BOM, not UTF-8."""

    status, slug, title = 400, "malformed-json", "Malformed JSON"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, errors=[{"field": "body", "message": reason}])


class UnsupportedMediaType(ProblemError):
    """A body sent as anything but JSON (or JSON:API), or without a `Content-Type`."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class NotAcceptable(ProblemError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ProblemError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class InsufficientStock(ProblemError):
    status, slug, title = 409, "insufficient-stock", "Insufficient stock"


class IdempotencyKeyInUse(ProblemError):
    status, slug, title = 409, "idempotency-key-in-use", "Idempotency key in use"


class TypeMismatch(ProblemError):
    """A JSON:API body whose resource `type` or `id` is not the one the route takes."""

    status, slug, title = 409, "type-mismatch", "Resource type mismatch"


class ReservationNotActive(ProblemError):
    """The reservation was released, expired or confirmed: it holds nothing to act on."""

    status, slug, title = 409, "reservation-not-active", "Reservation not active"


class VersionMismatch(ProblemError):
    status, slug, title = 412, "version-mismatch", "Version mismatch"


class RequestTimeout(ProblemError):
    status, slug, title = 408, "request-timeout", "Request timeout"


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnknownProduct(ProblemError):
    status, slug, title = 422, "unknown-product", "Unknown product"


class IdempotencyKeyReuse(ProblemError):
    status, slug, title = 422, "idempotency-key-reuse", "Idempotency key reused"


class ProductsUnavailable(ProblemError):
    status, slug, title = 503, "products-unavailable", "Products service unavailable"

    def __init__(self, detail: str, *, retry_after: float, product_ids: list[str]) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(detail, headers={"Retry-After": str(seconds)}, product_ids=product_ids)
        self.retry_after = seconds


class Overloaded(ProblemError):
    status, slug, title = 503, "overloaded", "Overloaded"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailable(ProblemError):
    status, slug, title = 503, "database-unavailable", "Database unavailable"


class SchemaNotCurrent(DatabaseUnavailable):
    """The database answers, but its schema is not at the revision this code needs: to a
    caller that is the database not being there yet."""

    def __init__(self, *, current: str | None, head: str) -> None:
        super().__init__(
            f"The database schema is at {current or 'nothing'}, the service needs {head}: "
            "run the migrations (`inventory migrate`)."
        )
        self.current = current
        self.head = head


class BadRequest(ProblemError):
    status, slug, title = 400, "bad-request", "Bad request"


def problem_body(error: ProblemError, request_id: str) -> dict[str, Any]:
    return {
        "type": f"/problems/{error.slug}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "request_id": request_id,
        **error.extensions,
    }
