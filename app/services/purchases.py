"""Purchases: every line taken from stock in one transaction, or none; and their cancellation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Connection

from app.clients.products import ProductsCatalog
from app.core.context import Caller
from app.core.database import Database
from app.core.errors import InsufficientStock, NotFound, ValidationFailed
from app.models.base import utcnow
from app.models.stock_level import MAX_QUANTITY
from app.repositories import purchases, stock_levels
from app.repositories.idempotency_keys import KeyHolder
from app.repositories.movements import NewMovement
from app.repositories.purchases import StoredPurchase
from app.repositories.stock_levels import Level
from app.schemas.common import is_issued_id, rfc3339
from app.schemas.purchases import PurchaseIn, PurchaseItemIn, PurchaseLineOut, PurchaseOut
from app.services import events, expiry, idempotency, ledger
from app.services.events import Slot
from app.services.known_products import require_known
from app.services.ledger import record_movements
from app.services.pricing import money, subtotal, total, unit_price

# Purchase ids are written as `str(uuid.uuid4())`.


_NOTHING_TAKEN = "Not enough stock for every line; nothing was taken."


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    quantity: int
    unit_price: Decimal | None

    @property
    def subtotal(self) -> Decimal | None:
        return subtotal(self.unit_price, self.quantity)


def merge_lines(items: Sequence[PurchaseItemIn]) -> dict[str, int]:
    """Quantities by product, in order of first appearance; the same product twice is summed."""
    quantities: dict[str, int] = {}
    for item in items:
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    return quantities


async def buy(
    db: Database,
    catalog: ProductsCatalog,
    caller: Caller,
    *,
    order: PurchaseIn,
    key: KeyHolder | None = None,
) -> PurchaseOut:
    """Check the products, then take every line from stock, or nothing: 409 naming every
    short line. Nothing changes when the catalog refuses a product or cannot answer. With a
    `key`, the receipt is kept with it in the purchase's unit of work."""
    quantities = merge_lines(order.items)
    lookups = await require_known(catalog, list(quantities))
    lines = [
        Line(pid, quantity, unit_price(lookups[pid].product if pid in lookups else None))
        for pid, quantity in quantities.items()
    ]
    purchase_id = str(uuid.uuid4())

    def unit(connection: Connection) -> PurchaseOut:
        now = utcnow()
        if connection.dialect.name == "postgresql":
            receipt = _buy_in_one_statement(
                connection, caller, purchase_id, order.reference, lines, now
            )
        else:
            # The purchase row first: it locks nothing that other buyers need, while every
            # statement after the first decrement is time the stock rows stay locked.
            insert_purchase(connection, caller, purchase_id, order.reference, lines, now)
            taken, freed = _take(connection, quantities, now)
            receipt = record_lines(
                connection, caller, purchase_id, order.reference, lines, taken, now, freed=freed
            )
        idempotency.keep(connection, key, receipt, created=True)
        return receipt

    return await db.write(unit)


def _buy_in_one_statement(
    connection: Connection,
    caller: Caller,
    purchase_id: str,
    reference: str | None,
    lines: list[Line],
    now: datetime,
) -> PurchaseOut:
    """What `insert_purchase`, `_take` and `record_lines` write, as one statement: the stock
    rows stay locked for no round trip but the COMMIT. The event texts are written here,
    with slots for what only the decrement knows."""
    rows = _line_rows(purchase_id, lines, [0] * len(lines))
    movements = [_movement(purchase_id, reference, line, 0) for line in lines]
    created_at = rfc3339(now)
    receipt_data = _receipt(purchase_id, reference, lines, rows, now).model_dump(mode="json")
    for position, item in enumerate(receipt_data["items"], start=1):
        item["remaining"] = Slot(position)
    templates = purchases.PurchaseTemplates(
        changed=[
            events.template(ledger.changed(caller, m, Slot(1, quoted=True), Slot(2), created_at))
            for m in movements
        ],
        low=[events.template(events.low_stock(m.product_id, Slot(1), Slot(2))) for m in movements],
        availability=[
            events.template(events.available(m.product_id, Slot(1), Slot(2))) for m in movements
        ],
        receipt=events.template(receipt_data),
    )
    bought = purchases.buy_postgres(
        connection,
        purchase_id=purchase_id,
        reference=reference,
        total=money(total(line.subtotal for line in lines)),
        lines=rows,
        templates=templates,
        actor=caller.actor,
        request_id=caller.request_id,
        now=now,
    )
    expiry.count_freed(connection, sum(line.freed for line in bought.lines))
    short = [line.product_id for line in bought.lines if line.quantity is None]
    if short:
        quantities = {line.product_id: line.quantity for line in lines}
        freed = {line.product_id: line.freed for line in bought.lines}
        raise short_of(connection, quantities, short, freed, _NOTHING_TAKEN)
    remaining = [line.quantity or 0 for line in bought.lines]
    events.written(connection, bought.events)
    ledger.announce(
        connection,
        caller,
        [
            _movement(purchase_id, reference, line, left)
            for line, left in zip(lines, remaining, strict=True)
        ],
    )
    rows = _line_rows(purchase_id, lines, remaining)
    return _receipt(purchase_id, reference, lines, rows, now)


def _line_rows(purchase_id: str, lines: list[Line], remaining: list[int]) -> list[dict[str, Any]]:
    """The `purchase_lines` rows of a purchase whose lines left `remaining` (in order)."""
    return [
        {
            "purchase_id": purchase_id,
            "product_id": line.product_id,
            "position": position,
            "quantity": line.quantity,
            "unit_price": money(line.unit_price),
            "subtotal": money(line.subtotal),
            "remaining": left,
        }
        for position, (line, left) in enumerate(zip(lines, remaining, strict=True))
    ]


def _movement(
    purchase_id: str,
    reference: str | None,
    line: Line,
    remaining: int,
    *,
    held: bool = False,
    reserved: int = 0,
    freed: int = 0,
) -> NewMovement:
    return NewMovement(
        product_id=line.product_id,
        kind="purchase",
        delta=-line.quantity,
        quantity_after=remaining,
        reason=reference,
        purchase_id=purchase_id,
        held=held,
        reserved=reserved,
        freed=freed,
    )


def _receipt(
    purchase_id: str,
    reference: str | None,
    lines: list[Line],
    rows: list[dict[str, Any]],
    now: datetime,
) -> PurchaseOut:
    return PurchaseOut(
        id=purchase_id,
        status="completed",
        reference=reference,
        items=[PurchaseLineOut.model_validate(row) for row in rows],
        total=money(total(line.subtotal for line in lines)),
        created_at=now,
        cancelled_at=None,
    )


def insert_purchase(
    connection: Connection,
    caller: Caller,
    purchase_id: str,
    reference: str | None,
    lines: list[Line],
    now: datetime,
) -> None:
    purchases.insert_purchase(
        connection,
        purchase_id=purchase_id,
        reference=reference,
        total=money(total(line.subtotal for line in lines)),
        actor=caller.actor,
        request_id=caller.request_id,
        now=now,
    )


def record_lines(
    connection: Connection,
    caller: Caller,
    purchase_id: str,
    reference: str | None,
    lines: list[Line],
    taken: Mapping[str, Level],
    now: datetime,
    *,
    held: bool = False,
    freed: Mapping[str, int] | None = None,
) -> PurchaseOut:
    """The lines of a purchase whose stock was taken (`taken`: each product's level after),
    their ledger movements and the unit's events: the receipt. `held`: the units were taken
    from a reservation's hold; `freed`: the units of expired holds the unit let go."""
    freed = freed or {}
    after = [taken[line.product_id] for line in lines]
    rows = _line_rows(purchase_id, lines, [level.quantity for level in after])
    purchases.insert_lines(connection, rows)
    receipt = _receipt(purchase_id, reference, lines, rows, now)
    record_movements(
        connection,
        caller,
        [
            _movement(
                purchase_id,
                reference,
                line,
                level.quantity,
                held=held,
                reserved=level.reserved,
                freed=freed.get(line.product_id, 0),
            )
            for line, level in zip(lines, after, strict=True)
        ],
        thresholds={pid: level.low_stock_threshold for pid, level in taken.items()},
        then=[events.new_event("purchase.completed", receipt.model_dump(mode="json"))],
    )
    return receipt


def _take(
    connection: Connection, quantities: dict[str, int], now: datetime
) -> tuple[dict[str, Level], dict[str, int]]:
    """Decrement each line with a conditional UPDATE, in product-id order so that two
    purchases sharing products lock them in the same order and cannot deadlock. Lines of
    expired holds are freed first, so their units count as available: each product's level
    after, and the units freed of it."""
    taken: dict[str, Level] = {}
    short: list[str] = []
    freed = expiry.free_expired(connection, quantities, now)
    for product_id in sorted(quantities):
        level = stock_levels.take(
            connection, product_id, quantities[product_id], now, freed=freed[product_id]
        )
        if level is None:
            short.append(product_id)
        else:
            taken[product_id] = level
    if short:
        raise short_of(
            connection,
            quantities,
            short,
            freed,
            _NOTHING_TAKEN,
        )
    return taken, freed


def short_of(
    connection: Connection,
    quantities: dict[str, int],
    short: list[str],
    freed: dict[str, int],
    detail: str,
) -> InsufficientStock:
    """409 naming each short line with what is available of it, in the order asked. `freed`:
    units of expired lines this unit stopped holding, not yet subtracted from `reserved`."""
    available = stock_levels.available(connection, short)
    return InsufficientStock(
        detail,
        items=[
            {
                "product_id": pid,
                "requested": quantities[pid],
                "available": available[pid] + freed[pid] if pid in available else 0,
            }
            for pid in sorted(short, key=list(quantities).index)
        ],
    )


def _not_found(purchase_id: str) -> NotFound:
    return NotFound(f"No purchase {purchase_id!r}.")


def _require_issuable(purchase_id: str) -> None:
    if not is_issued_id(purchase_id):
        raise _not_found(purchase_id)


async def get_purchase(db: Database, *, purchase_id: str) -> PurchaseOut:
    _require_issuable(purchase_id)
    return receipt_of(await db.read(partial(purchases.find, purchase_id=purchase_id)), purchase_id)


async def cancel(db: Database, caller: Caller, *, purchase_id: str) -> PurchaseOut:
    """Return every line to stock, once; a cancelled purchase is answered as it is."""
    _require_issuable(purchase_id)

    def unit(connection: Connection) -> PurchaseOut:
        now = utcnow()
        cancelled = purchases.mark_cancelled(connection, purchase_id, now)
        receipt = receipt_of(purchases.find(connection, purchase_id), purchase_id)
        if not cancelled:
            return receipt
        returned = sorted((line.product_id, line.quantity) for line in receipt.items)
        freed = expiry.free_expired(connection, [pid for pid, _ in returned], now)
        levels = [_restock(connection, pid, q, now, freed[pid]) for pid, q in returned]
        record_movements(
            connection,
            caller,
            [
                NewMovement(
                    product_id=product_id,
                    kind="cancel",
                    delta=quantity,
                    quantity_after=level.quantity,
                    reason=f"cancel purchase {purchase_id}",
                    purchase_id=purchase_id,
                    reserved=level.reserved,
                    freed=freed[product_id],
                )
                for (product_id, quantity), level in zip(returned, levels, strict=True)
            ],
            then=[events.new_event("purchase.cancelled", receipt.model_dump(mode="json"))],
        )
        return receipt

    return await db.write(unit)


def _restock(
    connection: Connection, product_id: str, quantity: int, now: datetime, freed: int
) -> Level:
    """Put units back, letting go of the `freed` units of expired holds: the level now; a
    stock level deleted since the purchase is recreated."""
    after = stock_levels.restock(connection, product_id, quantity, now, freed=freed)
    if after is None:
        after = stock_levels.insert_if_absent(connection, product_id, quantity, now)
    if after is not None:
        return after
    raise ValidationFailed(
        f"Cancelling would take {product_id!r} above {MAX_QUANTITY:,} units.",
        errors=[{"field": "items", "message": f"Stock levels lie in 0 … {MAX_QUANTITY}"}],
    )


def receipt_of(stored: StoredPurchase | None, purchase_id: str) -> PurchaseOut:
    """The receipt of a stored purchase; 404 when there is none."""
    if stored is None:
        raise _not_found(purchase_id)
    return PurchaseOut(
        id=stored.id,
        status=stored.status,
        reference=stored.reference,
        items=[PurchaseLineOut.model_validate(line) for line in stored.lines],
        total=stored.total,
        created_at=stored.created_at,
        cancelled_at=stored.cancelled_at,
    )
