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

# An event id as the feed issues it: `evt_`, then the transaction id and the row id in 16
# hex digits each. Both are 64-bit signed integers in the database, so each half is at most
# 7fff…: a larger one names no event, and must not reach a query.
EVENT_ID_PATTERN = r"^evt_[0-7][0-9a-f]{15}[0-7][0-9a-f]{15}$"


class EventOut(BaseModel):
    id: str = Field(examples=["evt_00000000000002f10000000000000a1c"])
    type: str = Field(examples=["stock.changed"])
    occurred_at: str = Field(examples=["2026-11-30T10:15:00Z"])
    data: dict[str, Any]


class EventsPage(BaseModel):
    items: list[EventOut]
