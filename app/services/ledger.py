"""The ledger: one movement per change of stock, written in the unit of work of the change."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any

import structlog
from pydantic import Field, TypeAdapter
from sqlalchemy import Connection

from app.core import metrics
from app.core.context import Caller
from app.core.database import Database, after_commit
from app.core.errors import NotFound
from app.models.base import utcnow
from app.models.movement import MAX_MOVEMENT_ID, MovementKind
from app.repositories import movements, stock_levels
from app.repositories.events import NewEvent
from app.repositories.movements import NewMovement
from app.schemas.common import Page, rfc3339
from app.schemas.stock import MovementOut
from app.services import events
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
    threshold: int | None = None,
    reserved: int = 0,
    freed: int = 0,
) -> None:
    """One movement; `threshold` and `reserved`: the product's low-stock threshold and the
    units held by reservations, as the change left them; `freed`: the units of expired holds
    it let go."""
    movement = NewMovement(
        product_id,
        kind,
        delta,
        quantity_after,
        reason,
        purchase_id,
        reserved=reserved,
        freed=freed,
    )
    record_movements(connection, caller, [movement], thresholds={product_id: threshold})


def record_movements(
    connection: Connection,
    caller: Caller,
    changes: Sequence[NewMovement],
    *,
    thresholds: Mapping[str, int | None] | None = None,
    then: Sequence[NewEvent] = (),
    bulk: bool = False,
) -> None:
    """Write movements and their events in the unit's transaction, followed by the unit's
    events `then`, all in one statement; announce each movement with an `inventory.changed`
    log line once that transaction has committed (`bulk`: none, the import writes one
    summary line of its own). `thresholds`: the low-stock threshold of each product, as the
    unit's own statements returned them; read when not given."""
    if not changes:
        return
    now = utcnow()
    ids = movements.insert_many(
        connection, changes, actor=caller.actor, request_id=caller.request_id, now=now
    )
    if thresholds is None:
        decreased = {m.product_id for m in changes if m.delta < 0}
        thresholds = stock_levels.thresholds(connection, decreased) if decreased else {}
    new = _events(caller, changes, ids, thresholds, now)
    events.emit_many(connection, [*new, *then])
    announce(connection, caller, changes, log=not bulk)


def _events(
    caller: Caller,
    changes: Sequence[NewMovement],
    ids: Sequence[int],
    thresholds: Mapping[str, int | None],
    now: datetime,
) -> list[NewEvent]:
    """`stock.changed` for each movement, each followed by the low, depleted or restocked
    event it causes."""
    created_at = rfc3339(now)
    new: list[NewEvent] = []
    for movement_id, m in zip(ids, changes, strict=True):
        data = changed(caller, m, str(movement_id), m.quantity_after, created_at)
        new.append(NewEvent("stock.changed", json.dumps(data, separators=(",", ":"))))
        before = m.quantity_after - m.delta
        available_after = m.quantity_after - m.reserved
        # Held units taken out of stock leave `available` where their hold put it.
        available_before = available_after if m.held else before - m.reserved - m.freed
        new += events.stock_events(
            m.product_id,
            quantity_before=before,
            quantity_after=m.quantity_after,
            available_before=available_before,
            available_after=available_after,
            threshold=thresholds.get(m.product_id),
        )
    return new


def changed(
    caller: Caller, m: NewMovement, movement_id: object, quantity_after: object, created_at: str
) -> dict[str, Any]:
    """The data of `stock.changed` for the movement `m`, whose id is `movement_id`."""
    return {
        "id": movement_id,
        "product_id": m.product_id,
        "kind": m.kind,
        "delta": m.delta,
        "quantity_after": quantity_after,
        "reason": m.reason,
        "purchase_id": m.purchase_id,
        "actor": caller.actor,
        "request_id": caller.request_id,
        "created_at": created_at,
    }


def announce(
    connection: Connection, caller: Caller, changes: Sequence[NewMovement], *, log: bool = True
) -> None:
    """Once the unit of `connection` commits: count each movement and log its
    `inventory.changed` line (unless not `log`)."""
    after_commit(connection, lambda: _announce(caller, changes, log=log))


def _announce(caller: Caller, changes: Sequence[NewMovement], *, log: bool) -> None:
    for movement in changes:
        metrics.count_movement(movement.kind)
        if not log:
            continue
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
