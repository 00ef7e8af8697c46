"""Types shared by every resource: product ids, timestamps, pages, problems."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, StringConstraints

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _integer_to_id(value: Any) -> Any:
    # Catalogs with integer ids send `7`; we store and answer "7". A bool is not an integer here.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


ProductIdStr = Annotated[str, StringConstraints(pattern=PRODUCT_ID_PATTERN)]
ProductIdIn = Annotated[
    ProductIdStr,
    BeforeValidator(_integer_to_id),
    Field(
        description="1–64 characters of [A-Za-z0-9._-]; a JSON integer reads as its decimal string."
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
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=["/problems/not-found"])
    title: str
    status: int
    detail: str
    request_id: str
    errors: list[FieldError] | None = None
    product_ids: list[str] | None = None
    items: list[dict[str, Any]] | None = None
