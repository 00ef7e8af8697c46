from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from app.schemas.common import Integral, PrintableText, ProductIdIn, Timestamp

MAX_LINE_QUANTITY = 1_000_000

Reference = Annotated[str, PrintableText, StringConstraints(max_length=100)]
LineQuantity = Annotated[int, Strict(), Field(ge=1, le=MAX_LINE_QUANTITY), Integral]


class PurchaseItemIn(BaseModel):
    product_id: ProductIdIn = Field(examples=["42"])
    quantity: LineQuantity = Field(examples=[2])


class PurchaseIn(BaseModel):
    items: list[PurchaseItemIn] = Field(min_length=1, max_length=100)
    reference: Reference | None = Field(default=None, examples=["order-1001"])

    model_config = {
        "json_schema_extra": {
            "examples": [
                # Product 42 is the one the README stocks first.
                {"items": [{"product_id": "42", "quantity": 2}], "reference": "order-1001"},
                {"items": [{"product_id": 42, "quantity": 1}]},
            ]
        }
    }


class PurchaseLineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price: str | None = Field(
        description="Decimal string; null when the catalog has no price."
    )
    subtotal: str | None
    remaining: int = Field(description="Stock left of this product right after the purchase.")


class PurchaseOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2c9a4e-8d1b-4c6a-9e0f-5b7d2a1c4e8f",
                    "status": "completed",
                    "reference": "order-1001",
                    "items": [
                        {
                            "product_id": "42",
                            "quantity": 2,
                            "unit_price": "12.90",
                            "subtotal": "25.80",
                            "remaining": 15,
                        }
                    ],
                    "total": "25.80",
                    "created_at": "2026-11-28T10:15:00Z",
                    "cancelled_at": None,
                }
            ]
        }
    )

    id: str
    status: str = Field(examples=["completed"])
    reference: str | None
    items: list[PurchaseLineOut]
    total: str | None = Field(description="Decimal string; null when any line has no price.")
    created_at: Timestamp
    cancelled_at: Timestamp | None
