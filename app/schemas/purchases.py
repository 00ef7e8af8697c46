from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StringConstraints

from app.schemas.common import PrintableText, ProductIdIn, Timestamp

MAX_LINE_QUANTITY = 1_000_000

Reference = Annotated[str, PrintableText, StringConstraints(max_length=100)]


class PurchaseItemIn(BaseModel):
    product_id: ProductIdIn = Field(examples=["42"])
    quantity: StrictInt = Field(ge=1, le=MAX_LINE_QUANTITY, examples=[2])


class PurchaseIn(BaseModel):
    items: list[PurchaseItemIn] = Field(min_length=1, max_length=100)
    reference: Reference | None = Field(default=None, examples=["order-1001"])

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "items": [
                        {"product_id": "42", "quantity": 2},
                        {"product_id": 7, "quantity": 1},
                    ],
                    "reference": "order-1001",
                }
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
    id: str
    status: str = Field(examples=["completed"])
    reference: str | None
    items: list[PurchaseLineOut]
    total: str | None = Field(description="Decimal string; null when any line has no price.")
    created_at: Timestamp
    cancelled_at: Timestamp | None
