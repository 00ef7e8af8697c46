"""The ledger: one movement per change of stock, written in the unit of work of the change."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated

import structlog
from pydantic import Field, TypeAdapter
from sqlalchemy import Connection

from app.core import metrics
from app.core.context import Caller
from app.core.database import Database, after_commit
from app.core.errors import NotFound
from app.models.base import utcnow
from app.models.movement import MAX_MOVEMENT_ID, MovementKind
from app.repositories import movements
from app.repositories.movements import NewMovement
from app.schemas.common import Page
from app.schemas.stock import MovementOut
from app.services.cursors import decode_cursor, encode_cursor, list_scope

logger = structlog.get_logger("app.inventory")

_movement_position = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_MOVEMENT_ID)])


def record_movement(
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
    record_movements(connection, caller, [movement])


def record_movements(
    connection: Connection, caller: Caller, changes: Sequence[NewMovement]
) -> None:
    """Write movements in the unit's transaction, and announce each one with an
    `inventory.changed` log line once that transaction has committed."""
    if not changes:
        return
    movements.insert_many(
        connection, changes, actor=caller.actor, request_id=caller.request_id, now=utcnow()
    )
    after_commit(connection, lambda: _announce(caller, changes))


def _announce(caller: Caller, changes: Sequence[NewMovement]) -> None:
    for movement in changes:
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
    before = None if cursor is None else decode_cursor(scope, cursor, _movement_position)
    rows = await db.read_one(
        partial(movements.of_product, product_id=product_id, before=before, limit=limit + 1)
    )
    if not rows and cursor is None:
        raise NotFound(f"Product {product_id!r} has no stock history.")
    page = rows[:limit]
    items = [MovementOut.model_validate({**row, "id": str(row["id"])}) for row in page]
    next_cursor = encode_cursor(scope, page[-1]["id"]) if len(rows) > limit else None
    return Page[MovementOut](items=items, next_cursor=next_cursor)
