"""The ledger: one movement per change of stock, written in the transaction of the change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import structlog
from pydantic import Field, TypeAdapter
from sqlalchemy import insert, select

from app.core import metrics
from app.core.context import Caller
from app.core.database import Connection, Database, after_commit
from app.core.errors import NotFound
from app.models import Movement
from app.models.base import utcnow
from app.models.movement import MAX_MOVEMENT_ID, MovementKind
from app.schemas.common import Page
from app.schemas.stock import MovementOut
from app.services.cursors import decode_cursor, encode_cursor, list_scope

_movement_columns = list(Movement.__table__.c)
# Built once: constructing an ORM-flavoured `insert(...).values(...)` on every call cost more
# than executing it (bench/RESULTS.md); the values travel as parameters instead.
_insert_movement = insert(Movement)

logger = structlog.get_logger("app.inventory")

_movement_position = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_MOVEMENT_ID)])


@dataclass(frozen=True, slots=True)
class NewMovement:
    product_id: str
    kind: MovementKind
    delta: int
    quantity_after: int
    reason: str | None = None
    purchase_id: str | None = None


async def record_movement(
    connection: Connection,
    caller: Caller,
    *,
    product_id: str,
    kind: MovementKind,
    delta: int,
    quantity_after: int,
    reason: str | None = None,
    purchase_id: str | None = None,
) -> None:
    movement = NewMovement(product_id, kind, delta, quantity_after, reason, purchase_id)
    await record_movements(connection, caller, [movement])


async def record_movements(
    connection: Connection, caller: Caller, movements: Sequence[NewMovement]
) -> None:
    """Write movements in the caller's transaction (one executemany), and announce each one
    with an `inventory.changed` log line once that transaction has committed."""
    if not movements:
        return
    now = utcnow()
    await connection.execute(
        _insert_movement,
        [
            {
                "product_id": m.product_id,
                "kind": m.kind,
                "delta": m.delta,
                "quantity_after": m.quantity_after,
                "reason": m.reason,
                "purchase_id": m.purchase_id,
                "actor": caller.actor,
                "request_id": caller.request_id,
                "created_at": now,
            }
            for m in movements
        ],
    )
    after_commit(connection, lambda: _announce(caller, movements))


def _announce(caller: Caller, movements: Sequence[NewMovement]) -> None:
    for movement in movements:
        logger.info(
            "inventory.changed",
            product_id=movement.product_id,
            kind=movement.kind,
            delta=movement.delta,
            quantity_after=movement.quantity_after,
            purchase_id=movement.purchase_id,
            actor=caller.actor,
            request_id=caller.request_id,
        )
        metrics.count_movement(movement.kind)


async def list_movements(
    db: Database, *, product_id: str, limit: int, cursor: str | None
) -> Page[MovementOut]:
    """The ledger of one product, newest first; 404 when it never had a movement."""
    scope = list_scope("movements", product_id=product_id)
    query = select(*_movement_columns).where(Movement.product_id == product_id)
    if cursor is not None:
        query = query.where(Movement.id < decode_cursor(scope, cursor, _movement_position))
    async with db.read_one() as connection:
        rows = (await connection.execute(query.order_by(Movement.id.desc()).limit(limit + 1))).all()
    if not rows and cursor is None:
        raise NotFound(f"Product {product_id!r} has no stock history.")
    page = rows[:limit]
    items = [MovementOut.model_validate({**row._mapping, "id": str(row.id)}) for row in page]
    next_cursor = encode_cursor(scope, page[-1].id) if len(rows) > limit else None
    return Page[MovementOut](items=items, next_cursor=next_cursor)
