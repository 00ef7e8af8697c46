from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, Strict

from app.models.reservation import ReservationStatus
from app.schemas.common import Integral, Timestamp
from app.schemas.purchases import PurchaseItemIn, Reference

MAX_TTL_SECONDS = 86_400
TtlSeconds = Annotated[int, Strict(), Field(ge=1, le=MAX_TTL_SECONDS), Integral]


class ReservationIn(BaseModel):
    items: list[PurchaseItemIn] = Field(min_length=1, max_length=100)
    ttl_seconds: TtlSeconds | None = Field(
        default=None,
        description="How long to hold; RESERVATION_TTL_SECONDS (900) when omitted.",
        examples=[900],
    )
    reference: Reference | None = Field(default=None, examples=["cart-77"])

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "items": [{"product_id": "42", "quantity": 2}],
                    "ttl_seconds": 900,
                    "reference": "cart-77",
                }
            ]
        }
    }


class ReservationExtension(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"ttl_seconds": 600}]}}

    ttl_seconds: TtlSeconds = Field(
        description="Expire this many seconds from now.", examples=[600]
    )


class ReservationLineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price: str | None = Field(
        description="Decimal string captured when the hold was made: the price a confirmation "
        "charges; null when the catalog had no price."
    )


class ReservationOut(BaseModel):
    id: str
    status: ReservationStatus
    reference: str | None
    items: list[ReservationLineOut]
    expires_at: Timestamp
    created_at: Timestamp
    purchase_id: str | None = Field(description="The purchase a confirmation made; else null.")
