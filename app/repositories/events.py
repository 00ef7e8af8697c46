"""The `events` table: the outbox, and the feed read from it.

Feed positions are (txid, id). On SQLite one writer commits in id order and txid is 0. On
PostgreSQL ids are handed out at insert, not at commit, so a reader of `id > n` could see 11
before 10 commits and never see 10. Each event therefore carries its transaction's id, and
the feed serves only events of transactions below a horizon under which every transaction
of this database has ended, so no event can later appear before one already served.

The horizon is the oldest transaction id among this database's sessions (`pg_stat_activity`,
whose `backend_xid` the service's role sees for its own sessions), or the snapshot's `xmax`
when none has one. A transaction gets its id at its first write, whatever that write is, so
one that has yet to insert its events is counted from then on; one that has no id yet will
get a higher one than `xmax`. Transactions of other databases on the same server do not
count: they never write here. The horizon must be read in a statement of its own, before the
events are (with a later snapshot): a transaction that ends while the horizon is read is then
already visible to the read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Text,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import InstrumentedAttribute

from app.models import Event

# Built once, like the other hot-path statements (docs/performance.md).
_insert = insert(Event).returning(Event.id)
_columns = [Event.txid, Event.id, Event.type, Event.occurred_at, Event.data]
_snapshot: ColumnElement[str] = literal_column("pg_current_snapshot()::text", Text())
# `backend_xid` is a 32-bit xid; events carry 64-bit ones (`xid8`). A running transaction's
# xid lies within 2^31 of the snapshot's `xmax`, which widens it: xmax plus the signed 32-bit
# distance from xmax's low 32 bits.
_horizon = text(
    """
    SELECT least(s.xmax, min(s.xmax
        + (a.backend_xid::text::bigint - s.xmax % 4294967296 + 6442450944) % 4294967296
        - 2147483648))
    FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax) AS s
    LEFT JOIN pg_stat_activity AS a
        ON a.datname = current_database() AND a.backend_xid IS NOT NULL
    GROUP BY s.xmax
    """
)


class NewEvent(NamedTuple):
    type: str
    data: str  # JSON


class StoredEvent(NamedTuple):
    txid: int
    id: int
    type: str
    occurred_at: datetime
    data: str


def insert_many(connection: Connection, events: Sequence[NewEvent], now: datetime) -> None:
    connection.execute(
        _insert, [{"type": e.type, "data": e.data, "occurred_at": now} for e in events]
    )


def horizon(connection: Connection) -> int | None:
    """The transaction id below which every event of this database is settled (PostgreSQL);
    None on SQLite, where every committed event is. Read it before the events, as the first
    statement of its transaction that reads `pg_stat_activity` (which a transaction reads
    once and keeps)."""
    if connection.dialect.name != "postgresql":
        return None
    return int(connection.execute(_horizon).scalar_one())


def after(
    connection: Connection,
    position: tuple[int, int],
    *,
    horizon: int | None,
    types: Collection[str] | None = None,
    limit: int,
) -> list[StoredEvent]:
    """Settled events after `position`, in feed order, below `horizon` (from `horizon`, read
    earlier); only of `types` when given."""
    if horizon is not None:
        query = select(*_columns).where(
            tuple_(Event.txid, Event.id) > tuple_(*position), Event.txid < horizon
        )
        order: tuple[InstrumentedAttribute[int], ...] = (Event.txid, Event.id)
    else:
        # txid is always 0 here: comparing ids alone lets SQLite walk its primary key
        # instead of scanning and sorting the table.
        query = select(*_columns).where(Event.id > position[1])
        order = (Event.id,)
    if types is not None:
        query = query.where(Event.type.in_(types))
    rows = connection.execute(query.order_by(*order).limit(limit))
    return [StoredEvent._make(row) for row in rows]


class Head(NamedTuple):
    """Where a new subscriber starts: after `position`, skipping the transactions `snapshot`
    (PostgreSQL's `xmin:xmax:xip,…`) saw as committed."""

    position: tuple[int, int]
    snapshot: str | None


def head(connection: Connection) -> Head:
    """The feed as of now: every event committed so far lies before it, none committed later."""
    if connection.dialect.name == "postgresql":
        snapshot = str(connection.execute(select(_snapshot)).scalar_one())
        return Head((int(snapshot.split(":", 1)[0]), 0), snapshot)
    last: int | None = connection.scalar(select(func.max(Event.id)))
    return Head((0, last or 0), None)


def committed_in(snapshot: str, txid: int) -> bool:
    """Whether transaction `txid` had committed (or aborted) when `snapshot` was taken."""
    xmin, xmax, in_progress = snapshot.split(":")
    if txid < int(xmin):
        return True
    return txid < int(xmax) and str(txid) not in in_progress.split(",")


def purge_before(connection: Connection, cutoff: datetime, *, batch: int) -> int:
    """Delete up to `batch` of the oldest events that occurred before `cutoff`."""
    oldest = (
        select(Event.id).where(Event.occurred_at < cutoff).order_by(Event.id).limit(batch)
    ).scalar_subquery()
    result = connection.execute(delete(Event).where(Event.id.in_(oldest)))
    return int(result.rowcount)
