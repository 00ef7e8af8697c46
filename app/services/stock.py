"""Stock levels: read them, set them, adjust them, forget them. Every change is one
conditional statement plus its ledger movement, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, Row, Update, bindparam, delete, select, update

from app.clients.products import ProductsCatalog
from app.core.context import Caller
from app.core.database import Connection, Database, insert_unless_exists
from app.core.errors import (
    InsufficientStock,
    NotFound,
    ProductsUnavailable,
    ValidationFailed,
    VersionMismatch,
)
from app.models import StockLevel
from app.models.base import UTCDateTime, utcnow
from app.models.stock_level import MAX_QUANTITY
from app.schemas.common import Page, ProductIdStr
from app.schemas.stock import StockLevelOut
from app.services.answers import Answer
from app.services.cursors import decode_cursor, encode_cursor, list_scope
from app.services.idempotency import Claim
from app.services.known_products import require_known
from app.services.ledger import record_movement

_columns = list(StockLevel.__table__.c)
# A write without a precondition retries when a concurrent request removed or replaced the
# row between two of its statements; each retry means another request committed meanwhile.
_LAST_WRITER_ATTEMPTS = 10
_stock_position = TypeAdapter(ProductIdStr)


@dataclass(frozen=True, slots=True)
class SetResult:
    stock: StockLevelOut
    created: bool


def _out(row: Row[tuple[object, ...]], product: dict[str, Any] | None = None) -> StockLevelOut:
    stock = StockLevelOut.model_validate(row)
    stock.product = product
    return stock


def _version_mismatch(product_id: str) -> VersionMismatch:
    return VersionMismatch(f"The stock level of {product_id!r} is not at the version you named.")


def _not_found(product_id: str) -> NotFound:
    return NotFound(f"No stock level for product {product_id!r}.")


# Built once, like every statement on a hot path: building one per call cost as much as
# running it (bench/RESULTS.md). Values travel as parameters.
_find_one = select(*_columns).where(StockLevel.product_id == bindparam("product_id"))
_lock_quantity = _find_one.with_only_columns(StockLevel.quantity).with_for_update()


def bump(*conditions: ColumnElement[bool]) -> Update:
    """An UPDATE of the stock level of product `:level` that also moves its version and
    timestamp (`:now`), returning the level."""
    return (
        update(StockLevel)
        .where(StockLevel.product_id == bindparam("level"), *conditions)
        .values(version=StockLevel.version + 1, updated_at=bindparam("now", type_=UTCDateTime()))
        .returning(*_columns)
    )


_at_version = StockLevel.version == bindparam("if_match")
_set = bump().values(quantity=bindparam("new_quantity"))
_set_at_version = _set.where(_at_version)
_adjusted = StockLevel.quantity + bindparam("delta")
_adjust_by = bump(_adjusted >= 0, _adjusted <= MAX_QUANTITY).values(quantity=_adjusted)
_adjust_at_version = _adjust_by.where(_at_version)
_insert_if_absent = {
    name: statement.returning(*_columns)
    for name, statement in insert_unless_exists(
        StockLevel,
        ["product_id"],
        product_id=bindparam("level"),
        quantity=bindparam("new_quantity"),
        version=1,
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    ).items()
}


async def _find(connection: Connection, product_id: str) -> Row[tuple[object, ...]] | None:
    return (await connection.execute(_find_one, {"product_id": product_id})).one_or_none()


async def get_stock(db: Database, catalog: ProductsCatalog, *, product_id: str) -> StockLevelOut:
    """One stock level with what the catalog says of its product (null if it cannot say)."""
    async with db.read_one() as connection:
        row = await _find(connection, product_id)
    if row is None:
        raise _not_found(product_id)
    stock = _out(row)
    if catalog.enabled:
        try:
            lookup = await catalog.lookup(product_id)
        except ProductsUnavailable:
            return stock
        stock.product = lookup.product
    return stock


async def list_stock(
    db: Database,
    *,
    product_ids: Sequence[str],
    max_quantity: int | None,
    limit: int,
    cursor: str | None,
) -> Page[StockLevelOut]:
    scope = list_scope("stock", product_ids=sorted(set(product_ids)), max_quantity=max_quantity)
    query = select(*_columns)
    if product_ids:
        query = query.where(StockLevel.product_id.in_(set(product_ids)))
    if max_quantity is not None:
        query = query.where(StockLevel.quantity <= max_quantity)
    if cursor is not None:
        query = query.where(StockLevel.product_id > decode_cursor(scope, cursor, _stock_position))
    query = query.order_by(StockLevel.product_id).limit(limit + 1)
    async with db.read_one() as connection:
        rows = (await connection.execute(query)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(scope, page[-1].product_id) if len(rows) > limit else None
    return Page[StockLevelOut](items=[_out(row) for row in page], next_cursor=next_cursor)


async def set_quantity(
    db: Database,
    catalog: ProductsCatalog,
    caller: Caller,
    *,
    product_id: str,
    quantity: int,
    reason: str | None,
    if_match: int | None = None,
    create_only: bool = False,
) -> SetResult:
    """Set the quantity on hand; the first set registers the product (checked in the catalog).

    Only creating asks the catalog, so only then does the answer carry the product.
    """
    product: dict[str, Any] | None = None
    if if_match is None:
        async with db.read_one() as connection:
            exists = await _find(connection, product_id) is not None
        if not exists:
            lookups = await require_known(catalog, [product_id])
            product = lookups[product_id].product if lookups else None
        elif create_only:
            raise VersionMismatch(f"A stock level for {product_id!r} already exists.")

    async with db.transaction() as connection:
        # Without a precondition the last writer wins: a level deleted by a concurrent
        # request between our statements is simply created again, never a 412.
        for _ in range(_LAST_WRITER_ATTEMPTS):
            if if_match is None:
                row = await insert_if_absent(connection, product_id, quantity)
                if row is not None:
                    await record_movement(
                        connection,
                        caller,
                        product_id=product_id,
                        kind="set",
                        delta=quantity,
                        quantity_after=quantity,
                        reason=reason,
                    )
                    return SetResult(_out(row, product), created=True)
                if create_only:
                    raise VersionMismatch(f"A stock level for {product_id!r} already exists.")
            previous = await connection.scalar(_lock_quantity, {"product_id": product_id})
            if previous is not None or if_match is not None:
                break
        row = (
            await connection.execute(
                _set if if_match is None else _set_at_version,
                {
                    "level": product_id,
                    "new_quantity": quantity,
                    "if_match": if_match,
                    "now": utcnow(),
                },
            )
        ).one_or_none()
        if row is None or previous is None:
            raise _version_mismatch(product_id)
        await record_movement(
            connection,
            caller,
            product_id=product_id,
            kind="set",
            delta=quantity - previous,
            quantity_after=quantity,
            reason=reason,
        )
        return SetResult(_out(row, product), created=False)


async def adjust(
    db: Database,
    caller: Caller,
    *,
    product_id: str,
    delta: int,
    reason: str,
    if_match: int | None = None,
    claim: Claim | None = None,
) -> Answer:
    """Add or remove stock, never below zero; the answer is stored with the change."""
    async with db.transaction() as connection:
        level = await _adjust(connection, caller, product_id, delta, reason, if_match)
        answer = Answer(200, level.model_dump(mode="json"), {"ETag": f'"{level.version}"'})
        if claim is not None:
            await claim.store(connection, answer)
    return answer


async def _adjust(
    connection: Connection,
    caller: Caller,
    product_id: str,
    delta: int,
    reason: str,
    if_match: int | None,
) -> StockLevelOut:
    row = (
        await connection.execute(
            _adjust_by if if_match is None else _adjust_at_version,
            {"level": product_id, "delta": delta, "if_match": if_match, "now": utcnow()},
        )
    ).one_or_none()
    if row is None:
        raise await _why_not_adjusted(connection, product_id, delta, if_match)
    await record_movement(
        connection,
        caller,
        product_id=product_id,
        kind="adjust",
        delta=delta,
        quantity_after=row.quantity,
        reason=reason,
    )
    return _out(row)


async def _why_not_adjusted(
    connection: Connection, product_id: str, delta: int, if_match: int | None
) -> Exception:
    current = await _find(connection, product_id)
    if if_match is not None and (current is None or current.version != if_match):
        return _version_mismatch(product_id)
    if current is None:
        return _not_found(product_id)
    if current.quantity + delta < 0:
        return InsufficientStock(
            f"Only {current.quantity} of {product_id!r} in stock.",
            items=[{"product_id": product_id, "requested": -delta, "available": current.quantity}],
        )
    return ValidationFailed(
        f"The stock level would exceed {MAX_QUANTITY:,}.",
        errors=[{"field": "delta", "message": f"Stock levels lie in 0 … {MAX_QUANTITY}"}],
    )


async def delete_stock(
    db: Database, caller: Caller, *, product_id: str, if_match: int | None = None
) -> None:
    """Forget a stock level; its ledger stays, closed by a movement back to zero."""
    statement = delete(StockLevel).where(StockLevel.product_id == product_id)
    if if_match is not None:
        statement = statement.where(StockLevel.version == if_match)
    async with db.transaction() as connection:
        for _ in range(_LAST_WRITER_ATTEMPTS):
            removed = await connection.scalar(statement.returning(StockLevel.quantity))
            if removed is not None or if_match is not None:
                break
            # Gone, or replaced by a concurrent delete-and-create that our statement waited
            # out: without a precondition, delete what is there now (if anything).
            if await _find(connection, product_id) is None:
                raise _not_found(product_id)
        if removed is None:
            raise (
                _version_mismatch(product_id) if if_match is not None else _not_found(product_id)
            )
        await record_movement(
            connection,
            caller,
            product_id=product_id,
            kind="delete",
            delta=-removed,
            quantity_after=0,
        )


async def insert_if_absent(
    connection: Connection, product_id: str, quantity: int
) -> Row[tuple[object, ...]] | None:
    """Create a stock level unless one exists; None when it already did."""
    values = {"level": product_id, "new_quantity": quantity, "now": utcnow()}
    statement = _insert_if_absent[connection.dialect.name]
    return (await connection.execute(statement, values)).one_or_none()
