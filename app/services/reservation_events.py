"""A reservation as the API shows it, and the `reservation.*` events that carry it."""

from __future__ import annotations

from sqlalchemy import Connection

from app.repositories.reservations import StoredReservation
from app.repositories.stock_levels import Level
from app.schemas.reservations import ReservationLineOut, ReservationOut
from app.services import events


def reservation_out(stored: StoredReservation) -> ReservationOut:
    return ReservationOut(
        id=stored.id,
        status=stored.status,
        reference=stored.reference,
        items=[ReservationLineOut.model_validate(line) for line in stored.lines],
        expires_at=stored.expires_at,
        created_at=stored.created_at,
        purchase_id=stored.purchase_id,
    )


def emit_availability(connection: Connection, level: Level, change: int) -> None:
    """`stock.depleted` or `stock.restocked` when a hold (`change` < 0) or its end (> 0) took
    `available` to 0 or back from it; the quantity on hand does not move."""
    after = level.quantity - level.reserved
    events.emit_many(
        connection,
        events.stock_events(
            level.product_id,
            quantity_before=level.quantity,
            quantity_after=level.quantity,
            available_before=after - change,
            available_after=after,
            threshold=None,
        ),
    )


def emit_reservation(connection: Connection, type_: str, stored: StoredReservation) -> None:
    """`reservation.created`, `.confirmed`, `.released` or `.expired`, in the unit's transaction."""
    events.emit(connection, type_, reservation_out(stored).model_dump(mode="json"))
