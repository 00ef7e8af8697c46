"""The `reservations` and `reservation_lines` tables: holds, their lines, and their ends.

Every change of a reservation's status is one conditional UPDATE, so two requests racing to
end the same reservation (confirm and release, say) cannot both succeed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from app.models import Reservation, ReservationLine
from app.models.base import UTCDateTime
from app.models.reservation import ReservationStatus

# Built once: building them per call cost more than running them (docs/performance.md).
_insert_reservation = insert(Reservation)
_insert_lines = insert(ReservationLine)
_find = select(*Reservation.__table__.c).where(Reservation.id == bindparam("rid"))
_lines = (
    select(*ReservationLine.__table__.c)
    .where(ReservationLine.reservation_id == bindparam("rid"))
    .order_by(ReservationLine.position)
)
_now = bindparam("now", type_=UTCDateTime())
_is_active = and_(Reservation.status == "active", Reservation.expires_at > _now)
_end = (
    update(Reservation)
    .where(Reservation.id == bindparam("rid"), _is_active)
    .values(status=bindparam("new_status"), ended_at=_now, purchase_id=bindparam("purchase"))
)
_extend = (
    update(Reservation)
    .where(Reservation.id == bindparam("rid"), _is_active)
    .values(expires_at=bindparam("until", type_=UTCDateTime()))
)
_extend_lines = (
    update(ReservationLine)
    .where(
        ReservationLine.reservation_id == bindparam("rid"),
        ReservationLine.held == true(),
    )
    .values(expires_at=bindparam("until", type_=UTCDateTime()))
)
_let_go = (
    update(ReservationLine)
    .where(
        ReservationLine.reservation_id == bindparam("rid"),
        ReservationLine.held == true(),
    )
    .values(held=False)
    .returning(ReservationLine.product_id, ReservationLine.quantity)
)


class StoredReservation(NamedTuple):
    id: str
    status: ReservationStatus
    reference: str | None
    created_at: datetime
    expires_at: datetime
    purchase_id: str | None
    lines: list[dict[str, Any]]


class NewLine(NamedTuple):
    product_id: str
    quantity: int
    unit_price: str | None


def insert_reservation(
    connection: Connection,
    *,
    reservation_id: str,
    reference: str | None,
    lines: Sequence[NewLine],
    actor: str,
    request_id: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """An active reservation whose lines are held (their units still to be added to
    `stock_levels.reserved` by the caller)."""
    connection.execute(
        _insert_reservation,
        {
            "id": reservation_id,
            "status": "active",
            "reference": reference,
            "actor": actor,
            "request_id": request_id,
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    connection.execute(
        _insert_lines,
        [
            {
                "reservation_id": reservation_id,
                "product_id": line.product_id,
                "position": position,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "expires_at": expires_at,
                "held": True,
            }
            for position, line in enumerate(lines)
        ],
    )


def status_at(status: str, expires_at: datetime, now: datetime) -> ReservationStatus:
    """What a stored status means at `now`: an active hold past its expiry has expired."""
    if status == "active" and expires_at <= now:
        return "expired"
    assert status in ("active", "confirmed", "released", "expired")
    return status  # type: ignore[return-value]


def find(connection: Connection, reservation_id: str, now: datetime) -> StoredReservation | None:
    head = connection.execute(_find, {"rid": reservation_id}).one_or_none()
    if head is None:
        return None
    lines = connection.execute(_lines, {"rid": reservation_id})
    return _stored(head, [dict(line._mapping) for line in lines], now)


def _stored(head: Any, lines: list[dict[str, Any]], now: datetime) -> StoredReservation:
    return StoredReservation(
        id=head.id,
        status=status_at(head.status, head.expires_at, now),
        reference=head.reference,
        created_at=head.created_at,
        expires_at=head.expires_at,
        purchase_id=head.purchase_id,
        lines=lines,
    )


def find_many(
    connection: Connection,
    *,
    status: ReservationStatus | None,
    product_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    now: datetime,
) -> list[StoredReservation]:
    """Newest first (by creation, then id), before position `before`, at most `limit`."""
    query = select(*Reservation.__table__.c)
    if status == "active":
        query = query.where(Reservation.status == "active", Reservation.expires_at > now)
    elif status == "expired":
        query = query.where(
            or_(
                Reservation.status == "expired",
                and_(Reservation.status == "active", Reservation.expires_at <= now),
            )
        )
    elif status is not None:
        query = query.where(Reservation.status == status)
    if product_id is not None:
        query = query.where(
            Reservation.id.in_(
                select(ReservationLine.reservation_id).where(
                    ReservationLine.product_id == product_id
                )
            )
        )
    if before is not None:
        created, ident = before
        query = query.where(
            or_(
                Reservation.created_at < created,
                and_(Reservation.created_at == created, Reservation.id < ident),
            )
        )
    query = query.order_by(Reservation.created_at.desc(), Reservation.id.desc()).limit(limit)
    heads = connection.execute(query).all()
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if heads:
        rows = connection.execute(
            select(*ReservationLine.__table__.c)
            .where(ReservationLine.reservation_id.in_([head.id for head in heads]))
            .order_by(ReservationLine.position)
        )
        for row in rows:
            lines[row.reservation_id].append(dict(row._mapping))
    return [_stored(head, lines[head.id], now) for head in heads]


def end(
    connection: Connection,
    reservation_id: str,
    status: ReservationStatus,
    now: datetime,
    *,
    purchase_id: str | None = None,
) -> bool:
    """Move an active, unexpired reservation to `status`; False when it is not such a one."""
    values = {
        "rid": reservation_id,
        "new_status": status,
        "purchase": purchase_id,
        "now": now,
    }
    return connection.execute(_end, values).rowcount == 1


def extend(connection: Connection, reservation_id: str, until: datetime, now: datetime) -> bool:
    """Move the expiry of an active, unexpired reservation and of its held lines; False when
    it is not active, or when a line was freed already."""
    values = {"rid": reservation_id, "until": until, "now": now}
    if connection.execute(_extend, values).rowcount != 1:
        return False
    held = connection.execute(_extend_lines, values).rowcount
    return held == line_count(connection, reservation_id)


def let_go(connection: Connection, reservation_id: str) -> list[tuple[str, int]]:
    """Stop holding the lines of a reservation still held: (product id, units) of each, in
    product id order (the order stock rows are locked in)."""
    rows = connection.execute(_let_go, {"rid": reservation_id})
    return sorted((product_id, int(quantity)) for product_id, quantity in rows)


def line_count(connection: Connection, reservation_id: str) -> int:
    count = connection.scalar(
        select(func.count())
        .select_from(ReservationLine)
        .where(ReservationLine.reservation_id == reservation_id)
    )
    return int(count or 0)


_free_expired = (
    update(ReservationLine)
    .where(
        ReservationLine.held == true(),
        ReservationLine.product_id.in_(bindparam("product_ids", expanding=True)),
        ReservationLine.expires_at <= _now,
    )
    .values(held=False)
    .returning(ReservationLine.product_id, ReservationLine.quantity)
)


def free_expired(
    connection: Connection, product_ids: Collection[str], now: datetime
) -> dict[str, int]:
    """Stop holding the lines of these products that expired by `now`: the units freed per
    product (0 for most). The caller subtracts them from `reserved` in its own conditional
    UPDATE of each product, in this unit."""
    freed = dict.fromkeys(product_ids, 0)
    rows = connection.execute(_free_expired, {"product_ids": list(product_ids), "now": now})
    for product_id, quantity in rows:
        freed[product_id] += quantity
    return freed


def expire_due(
    connection: Connection, now: datetime, limit: int
) -> tuple[list[str], dict[str, int]]:
    """Mark up to `limit` active reservations past their expiry `expired` and stop holding
    their lines: the ids expired, and the units freed per product (for `reserved`)."""
    due = (
        select(Reservation.id)
        .where(Reservation.status == "active", Reservation.expires_at <= now)
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    expired = list(
        connection.scalars(
            update(Reservation)
            .where(
                Reservation.id.in_(due.scalar_subquery()),
                Reservation.status == "active",
                Reservation.expires_at <= now,
            )
            .values(status="expired", ended_at=now)
            .returning(Reservation.id)
        )
    )
    freed: dict[str, int] = defaultdict(int)
    if expired:
        rows = connection.execute(
            update(ReservationLine)
            .where(ReservationLine.reservation_id.in_(expired), ReservationLine.held == true())
            .values(held=False)
            .returning(ReservationLine.product_id, ReservationLine.quantity)
        )
        for product_id, quantity in rows:
            freed[product_id] += quantity
    return expired, dict(freed)


def purge_ended(connection: Connection, before: datetime) -> int:
    """Forget reservations that ended before `before` (their lines go with them)."""
    result = connection.execute(
        delete(Reservation).where(Reservation.status != "active", Reservation.ended_at < before)
    )
    return result.rowcount
