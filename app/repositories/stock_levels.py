"""The `stock_levels` table: one row per product, its quantity on hand, the units held by
reservations, and its version.

`reserved` counts the lines still `held`, and some of those may be past their `expires_at`.
Readers subtract those units as they read (`reserved_now`). Writers that check against
`reserved` first free the expired lines of the product in the same unit
(`app.repositories.reservations.free_expired`) and pass the units freed as `freed`: each
change of the row is one conditional UPDATE, so `reserved <= quantity` holds whatever runs
concurrently, and the CHECK constraint `reserved_range` would refuse anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Update,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.models import ReservationLine, StockLevel
from app.models.base import UTCDateTime, utcnow
from app.models.stock_level import MAX_QUANTITY


class _Keep(enum.Enum):
    KEEP = "keep"


# A threshold to set (None: no threshold), or KEEP: leave it as it is.
KEEP = _Keep.KEEP
Threshold = int | None | Literal[_Keep.KEEP]


class Level(NamedTuple):
    product_id: str
    quantity: int
    reserved: int
    version: int
    created_at: datetime
    updated_at: datetime
    low_stock_threshold: int | None


_columns = [StockLevel.product_id, StockLevel.quantity, StockLevel.reserved, StockLevel.version]
_columns += [StockLevel.created_at, StockLevel.updated_at, StockLevel.low_stock_threshold]

# The units of this product's held lines that expired by `:now`: the index
# (held, product_id, expires_at) finds them, and there are none most of the time.
_expired_held = (
    # PostgreSQL sums BIGINT to NUMERIC: cast back, so Python sees an int.
    select(cast(func.coalesce(func.sum(ReservationLine.quantity), 0), BigInteger))
    .where(
        ReservationLine.held == true(),
        ReservationLine.product_id == StockLevel.product_id,
        ReservationLine.expires_at <= bindparam("now", type_=UTCDateTime()),
    )
    .scalar_subquery()
)
reserved_now = (StockLevel.reserved - _expired_held).label("reserved")
_read_columns = [StockLevel.product_id, StockLevel.quantity, reserved_now, *_columns[3:]]

# Built once: building a statement per call cost as much as running it (docs/performance.md).
_find = select(*_read_columns).where(StockLevel.product_id == bindparam("product_id"))
_lock_quantity = (
    select(StockLevel.quantity)
    .where(StockLevel.product_id == bindparam("product_id"))
    .with_for_update()
)


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
# What stays held once the expired lines the unit freed are let go.
_still_held = StockLevel.reserved - bindparam("freed")
_new_quantity = bindparam("new_quantity", type_=BigInteger())
_set = _bump(_new_quantity >= _still_held).values(quantity=_new_quantity, reserved=_still_held)
# Keyed by (a precondition given, a threshold given): an omitted threshold is left as it was.
_sets = {
    (False, False): _set,
    (True, False): _set.where(_at_version),
    (False, True): _set.values(low_stock_threshold=bindparam("threshold")),
    (True, True): _set.values(low_stock_threshold=bindparam("threshold")).where(_at_version),
}
_adjusted = StockLevel.quantity + bindparam("delta")
_adjust = _bump(_adjusted >= _still_held, _adjusted <= MAX_QUANTITY).values(
    quantity=_adjusted, reserved=_still_held
)
_adjust_at_version = _adjust.where(_at_version)
_wanted = bindparam("wanted", type_=BigInteger())
_left = StockLevel.quantity - _wanted
_take = _bump(_left >= _still_held).values(quantity=_left, reserved=_still_held)
_hold = _bump(StockLevel.quantity - _still_held >= _wanted).values(reserved=_still_held + _wanted)
_take_held = _bump(StockLevel.reserved >= _wanted).values(
    quantity=_left, reserved=StockLevel.reserved - _wanted
)
_unreserve = _bump(StockLevel.reserved >= _wanted).values(reserved=StockLevel.reserved - _wanted)
_returned = StockLevel.quantity + bindparam("returned")
_restock = _bump(_returned <= MAX_QUANTITY).values(quantity=_returned, reserved=_still_held)
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


def find(connection: Connection, product_id: str, now: datetime | None = None) -> Level | None:
    """The level, its `reserved` counting only holds unexpired at `now` (default: now)."""
    values = {"product_id": product_id, "now": now or utcnow()}
    return _level(connection.execute(_find, values).one_or_none())


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
    query = select(*_read_columns)
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
    rows = connection.execute(query.order_by(StockLevel.product_id).limit(limit), {"now": utcnow()})
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


def available(connection: Connection, product_ids: Collection[str]) -> dict[str, int]:
    """What can be sold now of each of these products that has a level."""
    query = select(StockLevel.product_id, StockLevel.quantity - reserved_now).where(
        StockLevel.product_id.in_(product_ids)
    )
    return {pid: int(left) for pid, left in connection.execute(query, {"now": utcnow()})}


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
    freed: int = 0,
    threshold: Threshold = KEEP,
) -> Level | None:
    """Set the quantity (at version `if_match` only, when given) if it stays at or above what
    is held once `freed` expired units are let go, and the low-stock threshold unless it is
    `KEEP`; None when nothing matched."""
    statement = _sets[(if_match is not None, threshold is not KEEP)]
    values = {
        "level_id": product_id,
        "new_quantity": quantity,
        "if_match": if_match,
        "now": now,
        "freed": freed,
        "threshold": None if threshold is KEEP else threshold,
    }
    return _level(connection.execute(statement, values).one_or_none())


def adjust(
    connection: Connection,
    product_id: str,
    delta: int,
    now: datetime,
    *,
    if_match: int | None,
    freed: int = 0,
) -> Level | None:
    """Add `delta` while the result stays between what is held (once `freed` expired units
    are let go) and MAX_QUANTITY; None when it would not."""
    statement = _adjust if if_match is None else _adjust_at_version
    values = {"level_id": product_id, "delta": delta, "if_match": if_match, "now": now}
    return _level(connection.execute(statement, values | {"freed": freed}).one_or_none())


def take(
    connection: Connection, product_id: str, quantity: int, now: datetime, *, freed: int = 0
) -> Level | None:
    """Take `quantity` units if that many are available (once `freed` expired units are let
    go): the level now, or None when short."""
    values = {"level_id": product_id, "wanted": quantity, "freed": freed, "now": now}
    return _level(connection.execute(_take, values).one_or_none())


def hold(
    connection: Connection, product_id: str, quantity: int, now: datetime, *, freed: int = 0
) -> Level | None:
    """Add `quantity` to `reserved` if that many are available (once `freed` expired units
    are let go): the level now, or None when short or absent."""
    values = {"level_id": product_id, "wanted": quantity, "freed": freed, "now": now}
    return _level(connection.execute(_hold, values).one_or_none())


def take_held(connection: Connection, product_id: str, quantity: int, now: datetime) -> Level:
    """Take units a held line counts in `reserved` out of stock: the level now."""
    values = {"level_id": product_id, "wanted": quantity, "now": now}
    return Level._make(connection.execute(_take_held, values).one())


def unreserve(connection: Connection, product_id: str, quantity: int, now: datetime) -> Level:
    """Stop counting the units of a held line in `reserved`: the level now."""
    values = {"level_id": product_id, "wanted": quantity, "now": now}
    return Level._make(connection.execute(_unreserve, values).one())


def restock(
    connection: Connection, product_id: str, quantity: int, now: datetime, *, freed: int = 0
) -> Level | None:
    """Put units back while at most MAX_QUANTITY, letting go of `freed` expired units: the
    level now, or None (absent or too many)."""
    values = {"level_id": product_id, "returned": quantity, "now": now, "freed": freed}
    return _level(connection.execute(_restock, values).one_or_none())


def remove(
    connection: Connection, product_id: str, *, if_match: int | None, freed: int = 0
) -> int | None:
    """Delete the level (at version `if_match` only, when given) if nothing stays held once
    `freed` expired units are let go: its last quantity, or None."""
    statement = delete(StockLevel).where(
        StockLevel.product_id == product_id, StockLevel.reserved == freed
    )
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
