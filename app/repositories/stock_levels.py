"""The `stock_levels` table: one row per product, its quantity on hand and its version."""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Update,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.models import StockLevel
from app.models.base import UTCDateTime
from app.models.stock_level import MAX_QUANTITY


class _Keep(enum.Enum):
    KEEP = "keep"


# A threshold to set (None: no threshold), or KEEP: leave it as it is.
KEEP = _Keep.KEEP
Threshold = int | None | Literal[_Keep.KEEP]


class Level(NamedTuple):
    product_id: str
    quantity: int
    version: int
    created_at: datetime
    updated_at: datetime
    low_stock_threshold: int | None


_columns = [StockLevel.product_id, StockLevel.quantity, StockLevel.version]
_columns += [StockLevel.created_at, StockLevel.updated_at, StockLevel.low_stock_threshold]

# Built once: building a statement per call cost as much as running it (docs/performance.md).
_find = select(*_columns).where(StockLevel.product_id == bindparam("product_id"))
_lock_quantity = _find.with_only_columns(StockLevel.quantity).with_for_update()


def _bump(*conditions: ColumnElement[bool]) -> Update:
    """An UPDATE of the level of `:level_id` that also moves its version and timestamp.

    Bind parameters are not named after columns: SQLAlchemy keeps those names for the
    VALUES and SET clauses."""
    return (
        update(StockLevel)
        .where(StockLevel.product_id == bindparam("level_id"), *conditions)
        .values(version=StockLevel.version + 1, updated_at=bindparam("now", type_=UTCDateTime()))
        .returning(*_columns)
    )


_at_version = StockLevel.version == bindparam("if_match")
_set = _bump().values(quantity=bindparam("new_quantity"))
# Keyed by (a precondition given, a threshold given): an omitted threshold is left as it was.
_sets = {
    (False, False): _set,
    (True, False): _set.where(_at_version),
    (False, True): _set.values(low_stock_threshold=bindparam("threshold")),
    (True, True): _set.values(low_stock_threshold=bindparam("threshold")).where(_at_version),
}
_adjusted = StockLevel.quantity + bindparam("delta")
_adjust = _bump(_adjusted >= 0, _adjusted <= MAX_QUANTITY).values(quantity=_adjusted)
_adjust_at_version = _adjust.where(_at_version)
_left = StockLevel.quantity - bindparam("wanted")
_take = _bump(_left >= 0).values(quantity=_left)
_returned = StockLevel.quantity + bindparam("returned")
_restock = _bump(_returned <= MAX_QUANTITY).values(quantity=_returned)
_insert_if_absent = {
    name: dialect.insert(StockLevel)
    .values(
        product_id=bindparam("level_id"),
        quantity=bindparam("new_quantity"),
        low_stock_threshold=bindparam("threshold"),
        version=1,
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .on_conflict_do_nothing(index_elements=["product_id"])
    .returning(*_columns)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _level(row: Sequence[Any] | None) -> Level | None:
    return None if row is None else Level._make(row)


def find(connection: Connection, product_id: str) -> Level | None:
    return _level(connection.execute(_find, {"product_id": product_id}).one_or_none())


def find_many(
    connection: Connection,
    *,
    product_ids: Collection[str],
    max_quantity: int | None,
    low_stock: bool | None = None,
    after: str | None,
    limit: int,
) -> list[Level]:
    """Levels in product id order, after `after`, at most `limit`; `low_stock`: only those at
    or below their threshold (True), or only those that are not (False)."""
    query = select(*_columns)
    if product_ids:
        query = query.where(StockLevel.product_id.in_(product_ids))
    if max_quantity is not None:
        query = query.where(StockLevel.quantity <= max_quantity)
    if low_stock is not None:
        low = StockLevel.quantity <= StockLevel.low_stock_threshold
        query = query.where(
            low if low_stock else or_(StockLevel.low_stock_threshold.is_(None), ~low)
        )
    if after is not None:
        query = query.where(StockLevel.product_id > after)
    rows = connection.execute(query.order_by(StockLevel.product_id).limit(limit))
    return [Level._make(row) for row in rows]


def quantities(
    connection: Connection, product_ids: Collection[str], *, for_update: bool = False
) -> dict[str, int]:
    """The quantity of each of these products that has a level (locked when `for_update`)."""
    query = select(StockLevel.product_id, StockLevel.quantity).where(
        StockLevel.product_id.in_(product_ids)
    )
    if for_update:
        query = query.with_for_update()
    return {row.product_id: row.quantity for row in connection.execute(query)}


def thresholds(connection: Connection, product_ids: Collection[str]) -> dict[str, int]:
    """The low-stock threshold of each of these products that has one."""
    rows = connection.execute(
        select(StockLevel.product_id, StockLevel.low_stock_threshold).where(
            StockLevel.product_id.in_(product_ids), StockLevel.low_stock_threshold.is_not(None)
        )
    )
    return {row.product_id: row.low_stock_threshold for row in rows}


def quantity_for_update(connection: Connection, product_id: str) -> int | None:
    """The quantity, its row locked until the transaction ends (PostgreSQL); None if absent."""
    quantity: int | None = connection.scalar(_lock_quantity, {"product_id": product_id})
    return quantity


def insert_if_absent(
    connection: Connection,
    product_id: str,
    quantity: int,
    now: datetime,
    *,
    threshold: int | None = None,
) -> Level | None:
    """Create a level at version 1 unless one exists; None when it already did."""
    statement = _insert_if_absent[connection.dialect.name]
    values = {"level_id": product_id, "new_quantity": quantity, "now": now, "threshold": threshold}
    return _level(connection.execute(statement, values).one_or_none())


def set_quantity(
    connection: Connection,
    product_id: str,
    quantity: int,
    now: datetime,
    *,
    if_match: int | None,
    threshold: Threshold = KEEP,
) -> Level | None:
    """Set the quantity (at version `if_match` only, when given), and the low-stock threshold
    unless it is `KEEP`; None when nothing matched."""
    statement = _sets[(if_match is not None, threshold is not KEEP)]
    values = {
        "level_id": product_id,
        "new_quantity": quantity,
        "if_match": if_match,
        "now": now,
        "threshold": None if threshold is KEEP else threshold,
    }
    return _level(connection.execute(statement, values).one_or_none())


def adjust(
    connection: Connection, product_id: str, delta: int, now: datetime, *, if_match: int | None
) -> Level | None:
    """Add `delta` while the result stays in 0 … MAX_QUANTITY; None when it would not."""
    statement = _adjust if if_match is None else _adjust_at_version
    values = {"level_id": product_id, "delta": delta, "if_match": if_match, "now": now}
    return _level(connection.execute(statement, values).one_or_none())


def take(connection: Connection, product_id: str, quantity: int, now: datetime) -> int | None:
    """Take `quantity` units if there are that many: the stock left, or None when short."""
    values = {"level_id": product_id, "wanted": quantity, "now": now}
    left = connection.execute(_take, values).one_or_none()
    return None if left is None else int(left.quantity)


def restock(connection: Connection, product_id: str, quantity: int, now: datetime) -> int | None:
    """Put units back while at most MAX_QUANTITY: the stock now, or None (absent or too many)."""
    values = {"level_id": product_id, "returned": quantity, "now": now}
    row = connection.execute(_restock, values).one_or_none()
    return None if row is None else int(row.quantity)


def remove(connection: Connection, product_id: str, *, if_match: int | None) -> int | None:
    """Delete the level (at version `if_match` only, when given): its last quantity, or None."""
    statement = delete(StockLevel).where(StockLevel.product_id == product_id)
    if if_match is not None:
        statement = statement.where(StockLevel.version == if_match)
    removed: int | None = connection.scalar(statement.returning(StockLevel.quantity))
    return removed


def insert_many(connection: Connection, levels: Sequence[tuple[str, int]], now: datetime) -> None:
    """New levels at version 1, in one statement."""
    connection.execute(
        insert(StockLevel),
        [
            {"product_id": pid, "quantity": q, "version": 1, "created_at": now, "updated_at": now}
            for pid, q in levels
        ],
    )


_set_many = (
    update(StockLevel)
    .where(StockLevel.product_id == bindparam("level_id"))
    .values(
        quantity=bindparam("level_quantity"),
        version=StockLevel.version + 1,
        updated_at=bindparam("now", type_=UTCDateTime()),
    )
)


def set_many(connection: Connection, levels: Sequence[tuple[str, int]], now: datetime) -> None:
    """Set the quantity of existing levels, in one executemany."""
    connection.execute(
        _set_many,
        [{"level_id": pid, "level_quantity": q, "now": now} for pid, q in levels],
    )
