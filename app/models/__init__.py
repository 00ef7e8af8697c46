"""The tables. Importing this package registers every one of them on `Base.metadata`."""

from app.models.base import Base
from app.models.event import Event
from app.models.idempotency_key import IdempotencyKey
from app.models.movement import Movement
from app.models.purchase import Purchase, PurchaseLine
from app.models.reservation import Reservation, ReservationLine
from app.models.stock_level import StockLevel
from app.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "Base",
    "Event",
    "IdempotencyKey",
    "Movement",
    "Purchase",
    "PurchaseLine",
    "Reservation",
    "ReservationLine",
    "StockLevel",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
