"""The `movements` table: the ledger, one row per change of stock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from app.models import Movement
from app.models.movement import MovementKind

# Built once: building the INSERT per call cost more than running it (docs/performance.md).
_insert = insert(Movement).returning(Movement.id, sort_by_parameter_order=True)
_columns = list(Movement.__table__.c)


@dataclass(frozen=True, slots=True)
class NewMovement:
    product_id: str
    kind: MovementKind
    delta: int
    quantity_after: int
    reason: str | None = None
    purchase_id: str | None = None
    # Not stored; they decide which events the change writes. `held`: the units were held,
    # so they left `available` when they were held and taking them out of stock moves only
    # the quantity. `reserved`: the units reservations still hold once the change is made.
    # `freed`: units of expired holds the change let go; no event told of their expiry yet,
    # so they count as held before the change, which then tells of it.
    held: bool = False
    reserved: int = 0
    freed: int = 0


def insert_many(
    connection: Connection,
    movements: Sequence[NewMovement],
    *,
    actor: str,
    request_id: str,
    now: datetime,
) -> list[int]:
    """Write movements, in one statement; their ids, in the order given."""
    rows = connection.execute(
        _insert,
        [
            {
                "product_id": m.product_id,
                "kind": m.kind,
                "delta": m.delta,
                "quantity_after": m.quantity_after,
                "reason": m.reason,
                "purchase_id": m.purchase_id,
                "actor": actor,
                "request_id": request_id,
                "created_at": now,
            }
            for m in movements
        ],
    )
    return [row.id for row in rows]


def of_product(
    connection: Connection, product_id: str, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The movements of one product, newest first, with ids below `before`; at most `limit`."""
    query = select(*_columns).where(Movement.product_id == product_id)
    if before is not None:
        query = query.where(Movement.id < before)
    rows = connection.execute(query.order_by(Movement.id.desc()).limit(limit))
    return [dict(row._mapping) for row in rows]
