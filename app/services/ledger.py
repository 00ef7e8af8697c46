"""The ledger: one movement per change of stock, written in the transaction of the change."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.context import Caller
from app.core.database import Database
from app.core.errors import NotFound
from app.models import Movement
from app.models.base import utcnow
from app.schemas.common import Page
from app.schemas.stock import MovementOut
from app.services.cursors import decode_cursor, encode_cursor

MovementKind = Literal["set", "adjust", "purchase", "cancel", "delete"]

_movement_columns = list(Movement.__table__.c)
# Built once: constructing an ORM-flavoured `insert(...).values(...)` on every call cost more
# than executing it (bench/RESULTS.md); the values travel as parameters instead.
_insert_movement = insert(Movement)


async def record_movement(
    connection: AsyncConnection,
    caller: Caller,
    *,
    product_id: str,
    kind: MovementKind,
    delta: int,
    quantity_after: int,
    reason: str | None = None,
    purchase_id: str | None = None,
) -> None:
    await connection.execute(
        _insert_movement,
        {
            "product_id": product_id,
            "kind": kind,
            "delta": delta,
            "quantity_after": quantity_after,
            "reason": reason,
            "purchase_id": purchase_id,
            "actor": caller.actor,
            "request_id": caller.request_id,
            "created_at": utcnow(),
        },
    )


async def list_movements(
    db: Database, *, product_id: str, limit: int, cursor: str | None
) -> Page[MovementOut]:
    """The ledger of one product, newest first; 404 when it never had a movement."""
    query = select(*_movement_columns).where(Movement.product_id == product_id)
    if cursor is not None:
        query = query.where(Movement.id < int(decode_cursor("movements", cursor)))
    async with db.read_one() as connection:
        rows = (await connection.execute(query.order_by(Movement.id.desc()).limit(limit + 1))).all()
    if not rows and cursor is None:
        raise NotFound(f"Product {product_id!r} has no stock history.")
    page = rows[:limit]
    items = [MovementOut.model_validate({**row._mapping, "id": str(row.id)}) for row in page]
    next_cursor = encode_cursor("movements", page[-1].id) if len(rows) > limit else None
    return Page[MovementOut](items=items, next_cursor=next_cursor)
