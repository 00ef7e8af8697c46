from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from app.models.stock_level import MAX_QUANTITY
from app.schemas.common import Integral, Reason, Timestamp

Quantity = Annotated[int, Strict(), Field(ge=0, le=MAX_QUANTITY), Integral]
Delta = Annotated[int, Strict(), Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY), Integral]


class StockLevelOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "product_id": "42",
                    "quantity": 17,
                    "reserved": 2,
                    "available": 15,
                    "version": 3,
                    "created_at": "2026-11-28T10:15:00Z",
                    "updated_at": "2026-11-28T11:02:41Z",
                    "product": {"id": "42", "name": "Towel", "price": 12.9},
                }
            ]
        },
    )

    product_id: str
    quantity: int = Field(description="Units on hand.")
    reserved: int = Field(description="Units held by active reservations.")
    available: int = Field(description="`quantity` − `reserved`: what can be sold now.")
    low_stock_threshold: int | None = Field(
        default=None, description="At or below it the product is low on stock; null: none."
    )
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    product: dict[str, Any] | None = Field(
        default=None,
        description="What the products service says of this product; null when it is not "
        "configured or cannot answer right now.",
    )


class SetQuantity(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"quantity": 17, "reason": "stocktake"},
                {"quantity": 0},
                {"quantity": 40, "low_stock_threshold": 5},
            ]
        }
    )

    quantity: Quantity = Field(examples=[17])
    reason: Reason | None = Field(default=None, examples=["stocktake"])
    low_stock_threshold: Quantity | None = Field(
        default=None,
        examples=[5],
        description="`stock.low` is sent when the quantity falls to it or below; null: no "
        "threshold. Left as it was when omitted.",
    )


class Adjustment(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"delta": -2, "reason": "damaged in transit"},
                {"delta": 40, "reason": "delivery 2026-11-28"},
            ]
        }
    )

    delta: Delta = Field(
        examples=[-2],
        description="Units to add (positive) or remove (negative); never zero.",
        json_schema_extra={"not": {"const": 0}},
    )
    reason: Reason = Field(
        examples=["damaged in transit"],
        description="Why, for the ledger: required, 1–200 characters.",
    )

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be zero")
        return value


class MovementOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "12",
                    "product_id": "42",
                    "kind": "adjust",
                    "delta": -2,
                    "quantity_after": 15,
                    "reason": "damaged in transit",
                    "purchase_id": None,
                    "actor": "default",
                    "request_id": "0b5e8f0c2d1a4c3e9f7a6b5d4c3b2a19",
                    "created_at": "2026-11-28T10:20:00Z",
                }
            ]
        },
    )

    id: str
    product_id: str
    kind: str = Field(examples=["adjust"])
    delta: int
    quantity_after: int
    reason: str | None
    purchase_id: str | None
    actor: str
    request_id: str
    created_at: Timestamp
