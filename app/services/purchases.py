"""Purchases: every line taken from stock in one transaction, or none; and their cancellation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Integer, bindparam, insert, select, update

from app.clients.products import ProductsCatalog
from app.core.context import Caller
from app.core.database import Connection, Database
from app.core.errors import InsufficientStock, NotFound, ValidationFailed
from app.models import Purchase, PurchaseLine, StockLevel
from app.models.base import utcnow
from app.models.stock_level import MAX_QUANTITY
from app.schemas.purchases import PurchaseIn, PurchaseLineOut, PurchaseOut
from app.services import stock
from app.services.answers import Answer
from app.services.idempotency import Claim
from app.services.known_products import require_known
from app.services.ledger import record_movement
from app.services.pricing import money, subtotal, total, unit_price

# Called after each line is taken, inside the transaction; tests use it to inject failures.
LineHook = Callable[[str], Awaitable[None]]

# The statements of a purchase are built once, their values passed as parameters: building
# them per request (ORM-flavoured `.values()`) cost more than running them (bench/RESULTS.md).
_insert_purchase = insert(Purchase)
_insert_lines = insert(PurchaseLine)
# One line: the conditional decrement, which also moves the version and the timestamp.
_left = StockLevel.quantity - bindparam("wanted", type_=Integer())
_take_line = stock.bump(_left >= 0).values(quantity=_left)
_returned = StockLevel.quantity + bindparam("returned")
_restock_line = stock.bump(_returned <= MAX_QUANTITY).values(quantity=_returned)


# Purchase ids are written as `str(uuid.uuid4())`.
_PURCHASE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    quantity: int
    unit_price: Decimal | None

    @property
    def subtotal(self) -> Decimal | None:
        return subtotal(self.unit_price, self.quantity)


def merge_lines(order: PurchaseIn) -> dict[str, int]:
    """Quantities by product, in order of first appearance; the same product twice is summed."""
    quantities: dict[str, int] = {}
    for item in order.items:
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    return quantities


async def buy(
    db: Database,
    catalog: ProductsCatalog,
    caller: Caller,
    *,
    order: PurchaseIn,
    claim: Claim | None = None,
    after_line: LineHook | None = None,
) -> Answer:
    """Check the products, then take every line from stock, or nothing: 409 naming every
    short line. Nothing changes when the catalog refuses a product or cannot answer."""
    quantities = merge_lines(order)
    lookups = await require_known(catalog, list(quantities))
    lines = [
        Line(pid, quantity, unit_price(lookups[pid].product if pid in lookups else None))
        for pid, quantity in quantities.items()
    ]
    purchase_id = str(uuid.uuid4())
    now = utcnow()
    grand_total = money(total(line.subtotal for line in lines))
    async with db.transaction() as connection:
        # The purchase row first: it locks nothing that other buyers need, while every
        # statement after the first decrement is time the stock rows stay locked.
        await connection.execute(
            _insert_purchase,
            {
                "id": purchase_id,
                "status": "completed",
                "reference": order.reference,
                "total": grand_total,
                "actor": caller.actor,
                "request_id": caller.request_id,
                "created_at": now,
            },
        )
        remaining = await _take(connection, quantities, after_line)
        line_rows = [
            {
                "purchase_id": purchase_id,
                "product_id": line.product_id,
                "position": position,
                "quantity": line.quantity,
                "unit_price": money(line.unit_price),
                "subtotal": money(line.subtotal),
                "remaining": remaining[line.product_id],
            }
            for position, line in enumerate(lines)
        ]
        await connection.execute(_insert_lines, line_rows)
        for line in lines:
            await record_movement(
                connection,
                caller,
                product_id=line.product_id,
                kind="purchase",
                delta=-line.quantity,
                quantity_after=remaining[line.product_id],
                reason=order.reference,
                purchase_id=purchase_id,
            )
        receipt = PurchaseOut(
            id=purchase_id,
            status="completed",
            reference=order.reference,
            items=[PurchaseLineOut.model_validate(row) for row in line_rows],
            total=grand_total,
            created_at=now,
            cancelled_at=None,
        )
        answer = Answer(
            201,
            receipt.model_dump(mode="json"),
            {"Location": f"/inventory/purchases/{purchase_id}"},
        )
        if claim is not None:
            await claim.store(connection, answer)
    return answer


async def _take(
    connection: Connection, quantities: dict[str, int], after_line: LineHook | None
) -> dict[str, int]:
    """Decrement each line with a conditional UPDATE, in product-id order so that two
    purchases sharing products lock them in the same order and cannot deadlock."""
    remaining: dict[str, int] = {}
    short: list[str] = []
    now = utcnow()
    for product_id in sorted(quantities):
        wanted = quantities[product_id]
        taken = (
            await connection.execute(
                _take_line, {"level": product_id, "wanted": wanted, "now": now}
            )
        ).one_or_none()
        if taken is None:
            short.append(product_id)
            continue
        remaining[product_id] = taken.quantity
        if after_line is not None:
            await after_line(product_id)
    if short:
        available = await _available(connection, short)
        raise InsufficientStock(
            "Not enough stock for every line; nothing was taken.",
            items=[
                {"product_id": pid, "requested": quantities[pid], "available": available[pid]}
                for pid in sorted(short, key=list(quantities).index)
            ],
        )
    return remaining


async def _available(connection: Connection, product_ids: list[str]) -> dict[str, int]:
    rows = await connection.execute(
        select(StockLevel.product_id, StockLevel.quantity).where(
            StockLevel.product_id.in_(product_ids)
        )
    )
    found: dict[str, int] = {row.product_id: row.quantity for row in rows}
    return {pid: found.get(pid, 0) for pid in product_ids}


def _not_found(purchase_id: str) -> NotFound:
    return NotFound(f"No purchase {purchase_id!r}.")


def _require_issuable(purchase_id: str) -> None:
    """Only ids the service could have issued reach a query: no NUL or stray text does."""
    if not _PURCHASE_ID.fullmatch(purchase_id):
        raise _not_found(purchase_id)


async def get_purchase(db: Database, *, purchase_id: str) -> PurchaseOut:
    _require_issuable(purchase_id)
    async with db.read() as connection:
        return await _load(connection, purchase_id)


async def cancel(db: Database, caller: Caller, *, purchase_id: str) -> PurchaseOut:
    """Return every line to stock, once; a cancelled purchase is answered as it is."""
    _require_issuable(purchase_id)
    async with db.transaction() as connection:
        now = utcnow()
        cancelled = await connection.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id, Purchase.status == "completed")
            .values(status="cancelled", cancelled_at=now)
        )
        if cancelled.rowcount == 1:
            lines = await connection.execute(
                select(PurchaseLine.product_id, PurchaseLine.quantity)
                .where(PurchaseLine.purchase_id == purchase_id)
                .order_by(PurchaseLine.product_id)
            )
            for line in lines.all():
                product_id, quantity = line.product_id, line.quantity
                after = await _restock(connection, product_id, quantity)
                await record_movement(
                    connection,
                    caller,
                    product_id=product_id,
                    kind="cancel",
                    delta=quantity,
                    quantity_after=after,
                    reason=f"cancel purchase {purchase_id}",
                    purchase_id=purchase_id,
                )
        return await _load(connection, purchase_id)


async def _restock(connection: Connection, product_id: str, quantity: int) -> int:
    """Put units back; a stock level deleted since the purchase is recreated."""
    row = (
        await connection.execute(
            _restock_line, {"level": product_id, "returned": quantity, "now": utcnow()}
        )
    ).one_or_none()
    if row is not None:
        return int(row.quantity)
    if await stock.insert_if_absent(connection, product_id, quantity) is not None:
        return quantity
    raise ValidationFailed(
        f"Cancelling would take {product_id!r} above {MAX_QUANTITY:,} units.",
        errors=[{"field": "items", "message": f"Stock levels lie in 0 … {MAX_QUANTITY}"}],
    )


async def _load(connection: Connection, purchase_id: str) -> PurchaseOut:
    head = (
        await connection.execute(select(*Purchase.__table__.c).where(Purchase.id == purchase_id))
    ).one_or_none()
    if head is None:
        raise _not_found(purchase_id)
    lines = await connection.execute(
        select(*PurchaseLine.__table__.c)
        .where(PurchaseLine.purchase_id == purchase_id)
        .order_by(PurchaseLine.position)
    )
    return PurchaseOut(
        id=head.id,
        status=head.status,
        reference=head.reference,
        items=[PurchaseLineOut.model_validate(line._mapping) for line in lines],
        total=head.total,
        created_at=head.created_at,
        cancelled_at=head.cancelled_at,
    )
