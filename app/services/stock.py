"""Stock levels: read them, set them, adjust them, forget them. Every change is one
conditional statement plus its ledger movement, in one unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection

from app.clients.products import ProductsCatalog
from app.core.context import Caller
from app.core.database import Database
from app.core.errors import (
    InsufficientStock,
    NotFound,
    ProblemError,
    ProductsUnavailable,
    ValidationFailed,
    VersionMismatch,
)
from app.models.base import utcnow
from app.models.stock_level import MAX_QUANTITY
from app.repositories import stock_levels
from app.repositories.idempotency_keys import KeyHolder
from app.repositories.stock_levels import KEEP as KEEP
from app.repositories.stock_levels import Level, Threshold
from app.schemas.common import Page, ProductIdStr
from app.schemas.stock import StockLevelOut
from app.services import expiry, idempotency
from app.services.cursors import decode_cursor, encode_cursor, list_scope
from app.services.known_products import require_known
from app.services.ledger import record_movement

# Without a precondition the last writer wins: when a concurrent request deletes or replaces
# the level between our statements (PostgreSQL, READ COMMITTED), we try again, this often.
_LAST_WRITER_ATTEMPTS = 10
_stock_position = TypeAdapter(ProductIdStr)


@dataclass(frozen=True, slots=True)
class SetResult:
    stock: StockLevelOut
    created: bool


def _out(level: Level, product: dict[str, Any] | None = None) -> StockLevelOut:
    return StockLevelOut(
        **level._asdict(), available=level.quantity - level.reserved, product=product
    )


def _version_mismatch(product_id: str) -> VersionMismatch:
    return VersionMismatch(f"The stock level of {product_id!r} is not at the version you named.")


def _already_exists(product_id: str) -> VersionMismatch:
    return VersionMismatch(f"A stock level for {product_id!r} already exists.")


def _not_found(product_id: str) -> NotFound:
    return NotFound(f"No stock level for product {product_id!r}.")


async def get_stock(db: Database, catalog: ProductsCatalog, *, product_id: str) -> StockLevelOut:
    """One stock level with what the catalog says of its product (null if it cannot say)."""
    level = await db.read_one(partial(stock_levels.find, product_id=product_id))
    if level is None:
        raise _not_found(product_id)
    stock = _out(level)
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
    low_stock: bool | None = None,
    limit: int,
    cursor: str | None,
) -> Page[StockLevelOut]:
    # `low_stock` joins the scope only when given, so cursors issued before it existed still
    # serve the lists they came from.
    filters = {} if low_stock is None else {"low_stock": low_stock}
    scope = list_scope(
        "stock", product_ids=sorted(set(product_ids)), max_quantity=max_quantity, **filters
    )
    after = None if cursor is None else decode_cursor(scope, cursor, _stock_position)
    levels = await db.read_one(
        partial(
            stock_levels.find_many,
            product_ids=set(product_ids),
            max_quantity=max_quantity,
            low_stock=low_stock,
            after=after,
            limit=limit + 1,
        )
    )
    page = levels[:limit]
    next_cursor = encode_cursor(scope, page[-1].product_id) if len(levels) > limit else None
    return Page[StockLevelOut](items=[_out(level) for level in page], next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class NewQuantity:
    """What a set asks for: a product's quantity on hand, why, and its low-stock threshold
    (`KEEP`: as it is; None: none)."""

    product_id: str
    quantity: int
    reason: str | None
    threshold: Threshold = KEEP


async def create_stock(
    db: Database, catalog: ProductsCatalog, caller: Caller, *, change: NewQuantity
) -> StockLevelOut:
    """Register the product (checked in the catalog) with this quantity; `VersionMismatch`
    when its stock level exists already. The result carries what the catalog says of it."""
    if await _exists(db, change.product_id):
        raise _already_exists(change.product_id)
    product = await _catalog_entry(catalog, change.product_id)

    def unit(connection: Connection) -> StockLevelOut:
        now = utcnow()
        _free_expired(connection, change.product_id, now)
        created = _insert(connection, caller, change, now)
        if created is None:
            raise _already_exists(change.product_id)
        return _out(created, product)

    return await db.write(unit)


async def replace_stock(
    db: Database, caller: Caller, *, change: NewQuantity, if_match: int
) -> StockLevelOut:
    """Set the quantity (and the threshold unless `KEEP`) of the level at version
    `if_match`; `VersionMismatch` at any other version or when there is none."""

    def unit(connection: Connection) -> StockLevelOut:
        now = utcnow()
        freed = _free_expired(connection, change.product_id, now)
        previous = stock_levels.quantity_for_update(connection, change.product_id)
        return _out(_replace(connection, caller, change, now, freed, previous, if_match=if_match))

    return await db.write(unit)


async def set_quantity(
    db: Database, catalog: ProductsCatalog, caller: Caller, *, change: NewQuantity
) -> SetResult:
    """Set the quantity on hand, and the low-stock threshold unless it is `KEEP`, whatever
    the level's version: the last writer wins. The first set registers the product
    (checked in the catalog), and only then does the result carry the product."""
    product_id = change.product_id
    product = None if await _exists(db, product_id) else await _catalog_entry(catalog, product_id)

    def unit(connection: Connection) -> SetResult:
        now = utcnow()
        freed = _free_expired(connection, product_id, now)
        previous: int | None = None
        for _ in range(_LAST_WRITER_ATTEMPTS):
            created = _insert(connection, caller, change, now)
            if created is not None:
                return SetResult(_out(created, product), created=True)
            previous = stock_levels.quantity_for_update(connection, product_id)
            if previous is not None:
                break
        level = _replace(connection, caller, change, now, freed, previous)
        return SetResult(_out(level, product), created=False)

    return await db.write(unit)


async def _exists(db: Database, product_id: str) -> bool:
    return await db.read_one(partial(stock_levels.find, product_id=product_id)) is not None


async def _catalog_entry(catalog: ProductsCatalog, product_id: str) -> dict[str, Any] | None:
    """What the catalog says of a product it knows; `UnknownProduct` when it does not."""
    lookups = await require_known(catalog, [product_id])
    return lookups[product_id].product if lookups else None


def _insert(
    connection: Connection, caller: Caller, change: NewQuantity, now: datetime
) -> Level | None:
    """The new level with its first movement; None when the product has one already."""
    threshold = None if change.threshold is KEEP else change.threshold
    created = stock_levels.insert_if_absent(
        connection, change.product_id, change.quantity, now, threshold=threshold
    )
    if created is not None:
        _record_set(connection, caller, change, created, delta=change.quantity)
    return created


def _replace(
    connection: Connection,
    caller: Caller,
    change: NewQuantity,
    now: datetime,
    freed: int,
    previous: int | None,
    *,
    if_match: int | None = None,
) -> Level:
    """Set the quantity of the level that held `previous` units (locked by this unit)."""
    level = stock_levels.set_quantity(
        connection,
        change.product_id,
        change.quantity,
        now,
        if_match=if_match,
        freed=freed,
        threshold=change.threshold,
    )
    if level is None or previous is None:
        raise _refusal(
            connection, change.product_id, if_match, freed, lambda _: change.quantity
        ) or _version_mismatch(change.product_id)
    _record_set(connection, caller, change, level, delta=change.quantity - previous, freed=freed)
    return level


def _record_set(
    connection: Connection,
    caller: Caller,
    change: NewQuantity,
    level: Level,
    *,
    delta: int,
    freed: int = 0,
) -> None:
    record_movement(
        connection,
        caller,
        product_id=change.product_id,
        kind="set",
        delta=delta,
        quantity_after=change.quantity,
        reason=change.reason,
        threshold=level.low_stock_threshold,
        reserved=level.reserved,
        freed=freed,
    )


async def adjust(
    db: Database,
    caller: Caller,
    *,
    product_id: str,
    delta: int,
    reason: str,
    if_match: int | None = None,
    key: KeyHolder | None = None,
) -> StockLevelOut:
    """Add or remove stock, never below zero; with a `key`, the level is kept with it in the
    unit of the change."""

    def unit(connection: Connection) -> StockLevelOut:
        level = _adjust(connection, caller, product_id, delta, reason, if_match)
        idempotency.keep(connection, key, level, created=False)
        return level

    return await db.write(unit)


def _adjust(
    connection: Connection,
    caller: Caller,
    product_id: str,
    delta: int,
    reason: str,
    if_match: int | None,
) -> StockLevelOut:
    now = utcnow()
    freed = _free_expired(connection, product_id, now)
    level = stock_levels.adjust(connection, product_id, delta, now, if_match=if_match, freed=freed)
    if level is None:
        raise _refusal(
            connection, product_id, if_match, freed, lambda current: current.quantity + delta
        ) or ValidationFailed(
            f"The stock level would exceed {MAX_QUANTITY:,}.",
            errors=[{"field": "delta", "message": f"Stock levels lie in 0 … {MAX_QUANTITY}"}],
        )
    record_movement(
        connection,
        caller,
        product_id=product_id,
        kind="adjust",
        delta=delta,
        quantity_after=level.quantity,
        reason=reason,
        threshold=level.low_stock_threshold,
        reserved=level.reserved,
        freed=freed,
    )
    return _out(level)


def _free_expired(connection: Connection, product_id: str, now: datetime) -> int:
    """Let go of the product's expired holds; every change calls it first, so that every
    unit locks reservation lines before the stock row, in that order."""
    return expiry.free_expired(connection, [product_id], now)[product_id]


def _refusal(
    connection: Connection,
    product_id: str,
    if_match: int | None,
    freed: int,
    new_quantity: Callable[[Level], int],
) -> ProblemError | None:
    """Why a conditional change of a level matched nothing, when the level explains it: a
    version other than `if_match`, no level, or `new_quantity` below what stays held once the
    `freed` units of expired holds are let go (409, in a purchase's shape)."""
    current = stock_levels.find(connection, product_id)
    if if_match is not None and (current is None or current.version != if_match):
        return _version_mismatch(product_id)
    if current is None:
        return _not_found(product_id)
    held = current.reserved - freed
    wanted = new_quantity(current)
    if wanted >= held:
        return None
    available = current.quantity - held
    return InsufficientStock(
        f"Only {available} of {product_id!r} available: {held} are held by reservations."
        if held
        else f"Only {current.quantity} of {product_id!r} in stock.",
        items=[
            {
                "product_id": product_id,
                "requested": current.quantity - wanted,
                "available": available,
            }
        ],
    )


async def delete_stock(
    db: Database, caller: Caller, *, product_id: str, if_match: int | None = None
) -> None:
    """Forget a stock level; its ledger stays, closed by a movement back to zero."""

    def unit(connection: Connection) -> None:
        freed = _free_expired(connection, product_id, utcnow())
        removed: int | None = None
        for _ in range(_LAST_WRITER_ATTEMPTS):
            removed = stock_levels.remove(connection, product_id, if_match=if_match, freed=freed)
            if removed is not None or if_match is not None:
                break
            # Gone, held, or replaced by a concurrent delete-and-create that our statement
            # waited out: without a precondition, delete what is there now (if anything).
            refused = _refusal(connection, product_id, None, freed, lambda _: 0)
            if refused is not None:
                raise refused
        if removed is None:
            raise _refusal(connection, product_id, if_match, freed, lambda _: 0) or (
                _version_mismatch(product_id) if if_match is not None else _not_found(product_id)
            )
        record_movement(
            connection,
            caller,
            product_id=product_id,
            kind="delete",
            delta=-removed,
            quantity_after=0,
            freed=freed,
        )

    await db.write(unit)
