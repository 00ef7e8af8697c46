"""Types shared by every resource: product ids, timestamps, pages, problems."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# They name the purchase routes under /inventory: `PUT /inventory/purchase` must not create
# a stock level, and `/inventory/purchases/...` must mean one thing only.
RESERVED_PRODUCT_IDS = ("purchase", "purchases")
PRODUCT_ID_RULE = (
    "1–64 characters of [A-Za-z0-9._-], the first a letter or digit; not "
    + " or ".join(f"`{reserved}`" for reserved in RESERVED_PRODUCT_IDS)
)

# The ids the service makes (purchases, reservations, webhook endpoints): `str(uuid.uuid4())`.
ISSUED_ID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ISSUED_ID = re.compile(ISSUED_ID_PATTERN)


def is_issued_id(value: str) -> bool:
    """Whether the service could have issued `value`: only such an id reaches a query, so no
    NUL or stray text does."""
    return _ISSUED_ID.fullmatch(value) is not None


_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._-]*")


def _product_id(value: str) -> str:
    """The id rules one by one, so the message names the rule that was broken."""
    if not 1 <= len(value) <= 64:
        message = "must be 1–64 characters long"
    elif not _ID_CHARACTERS.fullmatch(value):
        message = "may hold only letters, digits, '.', '_' and '-'"
    elif not value[0].isascii() or not value[0].isalnum():
        message = "must start with a letter or a digit"
    elif value in RESERVED_PRODUCT_IDS:
        message = f"'{value}' names the purchase routes; it cannot be a product id"
    else:
        return value
    raise PydanticCustomError("product_id", message)


_PRODUCT_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    # "Not a reserved word" as a lookahead: Swagger UI shows a schema with `not` as the
    # type "never".
    "pattern": "^(?!(?:" + "|".join(RESERVED_PRODUCT_IDS) + ")$)" + PRODUCT_ID_PATTERN[1:],
    "description": PRODUCT_ID_RULE + ".",
    "examples": ["42"],
}

# What a stored id looks like (ids stored before the reserved ones were refused included).
ProductIdStr = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
# A product id read from a caller: path, query, body or import file.
ProductId = Annotated[str, AfterValidator(_product_id), WithJsonSchema(_PRODUCT_ID_SCHEMA)]


# Integer ids up to 2^53 - 1: beyond it JSON numbers are not exact in many parsers
# (RFC 8259 §6), so a larger integer would not reliably name the product meant.
MAX_INTEGER_PRODUCT_ID = 2**53 - 1


# A whole number written with an exponent is turned into an int only up to this many digits:
# `1e999999999` must not make us build a billion-digit integer. Beyond it, no bound of ours
# can hold it, so it is refused as no integer.
_MAX_INTEGER_DIGITS = 30


def _integral(value: Any) -> Any:
    """A JSON number written with a fraction or an exponent (read by `strict_json` as the
    exact `Decimal` of its literal) as the integer it is when that value is whole (`2.0` is
    2, `2e3` is 2000), as JSON Schema's `integer` reads it; `0.99999999999999999999` and
    `1e-400` are not whole, whatever a float would round them to. Any other value as it
    came, to be judged by the field."""
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() < _MAX_INTEGER_DIGITS
        and value == value.to_integral_value()
    ):
        return int(value)
    return value


# What makes an integer field of a request body take a JSON integer, `2.0` included (never a
# string, a bool, `2.5` or `0.99999999999999999999`):
# `Annotated[int, Strict(), Field(ge=…, le=…), Integral]`. The bounds come before it, so the
# document states them as `minimum` and `maximum`.
Integral = BeforeValidator(_integral)


def _integer_to_id(value: Any) -> Any:
    # Catalogs with integer ids send `7`; we store and answer "7". A bool is not an integer
    # here, and an integer out of range stays one, to be refused as not a string.
    value = _integral(value)
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    if is_integer and 0 <= value <= MAX_INTEGER_PRODUCT_ID:
        return str(value)
    return value


ProductIdIn = Annotated[
    str,
    BeforeValidator(_integer_to_id),
    AfterValidator(_product_id),
    WithJsonSchema(
        {
            "anyOf": [
                _PRODUCT_ID_SCHEMA,
                {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_PRODUCT_ID},
            ],
            "description": PRODUCT_ID_RULE + "; a JSON integer reads as its decimal string.",
            "examples": ["42"],
        }
    ),
]


# Text that reaches the ledger: any printable character, no control characters (C0, DEL
# and C1: U+0085 breaks lines in some readers, U+009B starts terminal escapes).
PrintableText = StringConstraints(pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
Reason = Annotated[str, PrintableText, StringConstraints(min_length=1, max_length=200)]


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )


class FieldError(BaseModel):
    field: str = Field(examples=["items.0.quantity"])
    message: str = Field(examples=["Input should be greater than or equal to 1"])


class ShortLine(BaseModel):
    """A line of a purchase, a hold or a change that stock cannot cover."""

    product_id: str
    requested: int
    available: int


class Problem(BaseModel):
    """An RFC 9457 problem document, with the extensions its `type` names."""

    type: str = Field(description="`/problems/<slug>`.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    request_id: str
    errors: list[FieldError] | None = Field(
        default=None, description="`validation-error` and `malformed-json`: what is wrong, where."
    )
    product_ids: list[str] | None = Field(
        default=None,
        description="`unknown-product` and `products-unavailable`: the products concerned.",
    )
    items: list[ShortLine] | None = Field(
        default=None, description="`insufficient-stock`: every line that stock cannot cover."
    )
