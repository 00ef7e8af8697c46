"""Reservations: stock held for a checkout, then confirmed into a purchase, released, or
left to expire (`app.services.expiry`).

Each change of a reservation is one function run inside its unit of work (`_created`,
`_extended`, `_confirmed`, `_released`): what must happen with every such change (the log
line and the metrics, after the commit) happens there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

import structlog
from pydantic import TypeAdapter
from sqlalchemy import Connection

from app.clients.products import ProductsCatalog
from app.core import metrics
from app.core.context import Caller
from app.core.database import Database, after_commit
from app.core.errors import NotFound, ReservationNotActive
from app.models.base import utcnow
from app.models.reservation import ReservationStatus
from app.repositories import purchases as purchase_rows
from app.repositories import reservations, stock_levels
from app.repositories.idempotency_keys import KeyHolder
from app.repositories.reservations import NewLine, StoredReservation
from app.schemas.common import Page, is_issued_id
from app.schemas.purchases import PurchaseOut
from app.schemas.reservations import ReservationIn, ReservationOut
from app.services import expiry, idempotency
from app.services.cursors import decode_cursor, encode_cursor, list_scope
from app.services.known_products import require_known
from app.services.pricing import money, unit_price
from app.services.purchases import (
    Line,
    insert_purchase,
    merge_lines,
    receipt_of,
    record_lines,
    short_of,
)
from app.services.reservation_events import (
    emit_availability,
    emit_reservation,
    reservation_out,
)

logger = structlog.get_logger("app.reservations")

# Reservation ids are written as `str(uuid.uuid4())`.
_list_position = TypeAdapter(tuple[datetime, str])


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The purchase a reservation was confirmed into; `created`: by this request."""

    receipt: PurchaseOut
    created: bool


async def hold(
    db: Database,
    catalog: ProductsCatalog,
    caller: Caller,
    *,
    order: ReservationIn,
    ttl: timedelta,
    key: KeyHolder | None = None,
) -> ReservationOut:
    """Check the products and capture their prices, then hold every line or none: 409
    naming every line short of `available`."""
    quantities = merge_lines(order.items)
    lookups = await require_known(catalog, list(quantities))
    lines = [
        NewLine(pid, quantity, money(unit_price(lookups[pid].product if pid in lookups else None)))
        for pid, quantity in quantities.items()
    ]
    reservation_id = str(uuid.uuid4())

    def unit(connection: Connection) -> ReservationOut:
        now = utcnow()
        reservations.insert_reservation(
            connection,
            reservation_id=reservation_id,
            reference=order.reference,
            lines=lines,
            actor=caller.actor,
            request_id=caller.request_id,
            now=now,
            expires_at=now + ttl,
        )
        freed = expiry.free_expired(connection, quantities, now)
        # Product-id order, as for purchases: units sharing products lock them alike.
        short = []
        for pid in sorted(quantities):
            level = stock_levels.hold(connection, pid, quantities[pid], now, freed=freed[pid])
            if level is None:
                short.append(pid)
            else:
                emit_availability(connection, level, -quantities[pid])
        if short:
            raise short_of(
                connection,
                quantities,
                short,
                freed,
                "Not enough stock available for every line; nothing was held.",
            )
        stored = _find(connection, reservation_id, now)
        _created(connection, caller, stored)
        reservation = reservation_out(stored)
        idempotency.keep(connection, key, reservation, created=True)
        return reservation

    return await db.write(unit)


async def get_reservation(db: Database, *, reservation_id: str) -> ReservationOut:
    _require_issuable(reservation_id)
    stored = await db.read(partial(reservations.find, reservation_id=reservation_id, now=utcnow()))
    if stored is None:
        raise _not_found(reservation_id)
    return reservation_out(stored)


async def list_reservations(
    db: Database,
    *,
    status: ReservationStatus | None,
    product_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page[ReservationOut]:
    """Newest first."""
    scope = list_scope("reservations", status=status, product_id=product_id)
    before = None if cursor is None else decode_cursor(scope, cursor, _list_position)
    found = await db.read(
        partial(
            reservations.find_many,
            status=status,
            product_id=product_id,
            before=before,
            limit=limit + 1,
            now=utcnow(),
        )
    )
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = encode_cursor(scope, [last.created_at.isoformat(), last.id])
    return Page[ReservationOut](
        items=[reservation_out(stored) for stored in page], next_cursor=next_cursor
    )


async def extend(
    db: Database, caller: Caller, *, reservation_id: str, ttl: timedelta
) -> ReservationOut:
    """Expire `ttl` from now; only an active reservation can be extended."""
    _require_issuable(reservation_id)

    def unit(connection: Connection) -> ReservationOut:
        now = utcnow()
        extended = reservations.extend(connection, reservation_id, now + ttl, now)
        stored = _find(connection, reservation_id, now)
        if not extended:
            raise _not_active(stored, "extended")
        _extended(connection, caller, stored)
        return reservation_out(stored)

    return await db.write(unit)


async def confirm(
    db: Database,
    caller: Caller,
    *,
    reservation_id: str,
    key: KeyHolder | None = None,
) -> Confirmation:
    """Take the held units out of stock as one purchase, at the prices captured when they
    were held; the products service is not asked. Again: the same receipt, not created."""
    _require_issuable(reservation_id)
    purchase_id = str(uuid.uuid4())

    def unit(connection: Connection) -> Confirmation:
        now = utcnow()
        if reservations.end(connection, reservation_id, "confirmed", now, purchase_id=purchase_id):
            receipt = _take_held(connection, caller, reservation_id, purchase_id, now)
            confirmation = Confirmation(receipt, created=True)
        else:
            stored = _find(connection, reservation_id, now)
            if stored.status != "confirmed" or stored.purchase_id is None:
                raise _not_active(stored, "confirmed")
            receipt = receipt_of(
                purchase_rows.find(connection, stored.purchase_id), stored.purchase_id
            )
            confirmation = Confirmation(receipt, created=False)
        idempotency.keep(connection, key, confirmation.receipt, created=confirmation.created)
        return confirmation

    return await db.write(unit)


async def release(db: Database, caller: Caller, *, reservation_id: str) -> ReservationOut:
    """Give the held units back. Again, or once expired: nothing changes."""
    _require_issuable(reservation_id)

    def unit(connection: Connection) -> ReservationOut:
        now = utcnow()
        if reservations.end(connection, reservation_id, "released", now):
            stored = _find(connection, reservation_id, now)
            _released(connection, caller, stored, now)
            return reservation_out(stored)
        stored = _find(connection, reservation_id, now)
        if stored.status == "confirmed":
            raise _not_active(stored, "released")
        return reservation_out(stored)

    return await db.write(unit)


def _take_held(
    connection: Connection, caller: Caller, reservation_id: str, purchase_id: str, now: datetime
) -> PurchaseOut:
    """The confirmation's purchase: the held units out of stock and out of `reserved`."""
    stored = _find(connection, reservation_id, now)
    held = reservations.let_go(connection, reservation_id)
    if len(held) != len(stored.lines):
        # A writer on another clock freed a line as expired at the very moment: the
        # reservation expired for that product, so it cannot be confirmed whole.
        raise _not_active(stored._replace(status="expired"), "confirmed")
    lines = [
        Line(
            line["product_id"],
            line["quantity"],
            None if line["unit_price"] is None else Decimal(line["unit_price"]),
        )
        for line in stored.lines
    ]
    insert_purchase(connection, caller, purchase_id, stored.reference, lines, now)
    taken = {
        product_id: stock_levels.take_held(connection, product_id, quantity, now)
        for product_id, quantity in held
    }
    receipt = record_lines(
        connection, caller, purchase_id, stored.reference, lines, taken, now, held=True
    )
    _confirmed(connection, caller, stored, purchase_id)
    return receipt


def _created(connection: Connection, caller: Caller, stored: StoredReservation) -> None:
    emit_reservation(connection, "reservation.created", stored)
    units = sum(line["quantity"] for line in stored.lines)

    def announce() -> None:
        _log("reservation.created", caller, stored, units=units, expires_at=stored.expires_at)
        metrics.count_reservation("created")
        metrics.count_reserved_units("held", units)

    after_commit(connection, announce)


def _extended(connection: Connection, caller: Caller, stored: StoredReservation) -> None:
    after_commit(
        connection,
        lambda: _log("reservation.extended", caller, stored, expires_at=stored.expires_at),
    )


def _confirmed(
    connection: Connection, caller: Caller, stored: StoredReservation, purchase_id: str
) -> None:
    confirmed = stored._replace(status="confirmed", purchase_id=purchase_id)
    emit_reservation(connection, "reservation.confirmed", confirmed)
    units = sum(line["quantity"] for line in stored.lines)

    def announce() -> None:
        _log("reservation.confirmed", caller, stored, units=units, purchase_id=purchase_id)
        metrics.count_reservation("confirmed")
        metrics.count_reserved_units("confirmed", units)

    after_commit(connection, announce)


def _released(
    connection: Connection, caller: Caller, stored: StoredReservation, now: datetime
) -> None:
    """Give back the units still held (a line a writer freed as expired has none left)."""
    emit_reservation(connection, "reservation.released", stored)
    let_go = reservations.let_go(connection, stored.id)
    for product_id, quantity in let_go:
        level = stock_levels.unreserve(connection, product_id, quantity, now)
        emit_availability(connection, level, quantity)
    units = sum(quantity for _, quantity in let_go)

    def announce() -> None:
        _log("reservation.released", caller, stored, units=units)
        metrics.count_reservation("released")
        metrics.count_reserved_units("released", units)

    after_commit(connection, announce)


def _log(event: str, caller: Caller, stored: StoredReservation, **fields: object) -> None:
    logger.info(
        event,
        reservation_id=stored.id,
        reference=stored.reference,
        actor=caller.actor,
        request_id=caller.request_id,
        **fields,
    )


def _find(connection: Connection, reservation_id: str, now: datetime) -> StoredReservation:
    stored = reservations.find(connection, reservation_id, now)
    if stored is None:
        raise _not_found(reservation_id)
    return stored


def _not_found(reservation_id: str) -> NotFound:
    return NotFound(f"No reservation {reservation_id!r}.")


def _not_active(stored: StoredReservation, verb: str) -> ReservationNotActive:
    return ReservationNotActive(
        f"Reservation {stored.id!r} is {stored.status}: it cannot be {verb}.",
        reservation_status=stored.status,
    )


def _require_issuable(reservation_id: str) -> None:
    if not is_issued_id(reservation_id):
        raise _not_found(reservation_id)
