from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

EVENT_TYPES = (
    "stock.changed",
    "stock.low",
    "stock.depleted",
    "stock.restocked",
    "purchase.completed",
    "purchase.cancelled",
    "reservation.created",
    "reservation.confirmed",
    "reservation.released",
    "reservation.expired",
)


class EventOut(BaseModel):
    id: str = Field(examples=["evt_00000000000002f10000000000000a1c"])
    type: str = Field(examples=["stock.changed"])
    occurred_at: str = Field(examples=["2026-11-30T10:15:00Z"])
    data: dict[str, Any]


class EventsPage(BaseModel):
    items: list[EventOut]
