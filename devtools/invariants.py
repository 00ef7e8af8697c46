"""What must hold after any load, crash or failure: the books balance."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from app.core.database import Database
from app.models import Movement, Purchase, PurchaseLine, Reservation, ReservationLine, StockLevel


async def broken_invariants(db: Database) -> list[str]:
    """Every way the stored state contradicts itself; empty when the books balance."""
    problems: list[str] = []
    levels, sums, lines, sold, returned, cancelled_lines, empty = await db.read(_books)
    reserved, held, unconfirmed = await db.read(_holds)
    problems += [f"{pid}: quantity {q} below zero" for pid, q in levels.items() if q < 0]
    problems += [
        f"{pid}: reserved {r} outside 0 … quantity {levels.get(pid)}"
        for pid, r in reserved.items()
        if not 0 <= r <= levels.get(pid, 0)
    ]
    for product_id in set(reserved) | set(held):
        if reserved.get(product_id, 0) != int(held.get(product_id) or 0):
            problems.append(
                f"{product_id}: reserved {reserved.get(product_id)}, held lines sum to "
                f"{held.get(product_id)}"
            )
    problems += [f"confirmed reservation without its purchase: {rid}" for rid in unconfirmed]
    for product_id in set(levels) | set(sums):
        if int(sums.get(product_id) or 0) != levels.get(product_id, 0):
            problems.append(
                f"{product_id}: ledger sums to {sums.get(product_id)}, stock is "
                f"{levels.get(product_id, 0)}"
            )
    problems += [f"purchase line without its movement: {line}" for line in lines - sold]
    problems += [f"purchase movement without its line: {move}" for move in sold - lines]
    problems += [f"cancelled line not returned: {line}" for line in cancelled_lines - returned]
    problems += [f"return without a cancelled line: {move}" for move in returned - cancelled_lines]
    if empty:
        problems.append(f"{empty} purchases without lines")
    return problems


def _holds(connection: Connection) -> tuple[Any, ...]:
    reserved = dict(connection.execute(select(StockLevel.product_id, StockLevel.reserved)).all())
    held = dict(
        connection.execute(
            select(ReservationLine.product_id, func.sum(ReservationLine.quantity))
            .where(ReservationLine.held.is_(True))
            .group_by(ReservationLine.product_id)
        ).all()
    )
    unconfirmed = connection.scalars(
        select(Reservation.id).where(
            Reservation.status == "confirmed",
            ~Reservation.purchase_id.in_(select(Purchase.id)),
        )
    ).all()
    return reserved, held, list(unconfirmed)


def _books(connection: Connection) -> tuple[Any, ...]:
    """Everything the invariants compare, read in one transaction."""
    levels = dict(connection.execute(select(StockLevel.product_id, StockLevel.quantity)).all())
    sums = dict(
        connection.execute(
            select(Movement.product_id, func.sum(Movement.delta)).group_by(Movement.product_id)
        ).all()
    )
    lines = {
        (row.purchase_id, row.product_id, -row.quantity)
        for row in connection.execute(select(PurchaseLine))
    }
    sold = {
        (row.purchase_id, row.product_id, row.delta)
        for row in connection.execute(select(Movement).where(Movement.kind == "purchase"))
    }
    returned = {
        (row.purchase_id, row.product_id, -row.delta)
        for row in connection.execute(select(Movement).where(Movement.kind == "cancel"))
    }
    cancelled_lines = {
        (row.purchase_id, row.product_id, -row.quantity)
        for row in connection.execute(
            select(PurchaseLine)
            .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
            .where(Purchase.status == "cancelled")
        )
    }
    empty = connection.scalar(
        select(func.count())
        .select_from(Purchase)
        .where(~Purchase.id.in_(select(PurchaseLine.purchase_id)))
    )
    return levels, sums, lines, sold, returned, cancelled_lines, empty


async def units_sold(db: Database) -> dict[str, int]:
    """Units taken by purchases that stand (completed, not cancelled), by product."""
    rows = await db.read(
        lambda c: c.execute(
            select(PurchaseLine.product_id, func.sum(PurchaseLine.quantity))
            .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
            .where(Purchase.status == "completed")
            .group_by(PurchaseLine.product_id)
        ).all()
    )
    return {product_id: int(total) for product_id, total in rows}
