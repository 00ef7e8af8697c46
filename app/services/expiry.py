"""Expiry of reservations: nothing waits for it.

A hold past its `expires_at` stops counting at once: readers subtract its units as they
read, and every unit of work that checks a product against `reserved` first frees that
product's expired lines (`free_expired`). The background task `expire_reservations` then
marks the reservations themselves `expired` and frees what is left of them; every process
may run it, since each change is a conditional UPDATE that only one of them wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app.core import metrics
from app.core.database import Database, after_commit
from app.core.errors import DatabaseUnavailable
from app.models.base import utcnow
from app.repositories import reservations, stock_levels
from app.services.reservation_events import emit_availability, emit_reservation

# Readers stop counting an expired hold at once; this bounds how long its reservation still
# reads `active` in the database (its API status reads `expired` already).
SWEEP_INTERVAL = timedelta(seconds=0.5)
SWEEP_BATCH = 500
PURGE_INTERVAL = timedelta(minutes=10)

logger = structlog.get_logger("app.reservations")
_errors = logging.getLogger("app.reservations")


def free_expired(
    connection: Connection, product_ids: Collection[str], now: datetime
) -> dict[str, int]:
    """Stop holding the expired lines of these products, in this unit: units freed per
    product, which the caller subtracts from `reserved` in its conditional UPDATE."""
    freed = reservations.free_expired(connection, product_ids, now)
    count_freed(connection, sum(freed.values()))
    return freed


def count_freed(connection: Connection, units: int) -> None:
    """Units of expired holds this unit let go: counted once it commits."""
    if units:
        after_commit(connection, lambda: metrics.count_reserved_units("expired", units))


def expire_due(connection: Connection, now: datetime) -> int:
    """Mark due reservations `expired` and give their held units back: how many expired."""
    expired, freed = reservations.expire_due(connection, now, SWEEP_BATCH)
    for product_id in sorted(freed):
        level = stock_levels.unreserve(connection, product_id, freed[product_id], now)
        emit_availability(connection, level, freed[product_id])
    for reservation_id in expired:
        stored = reservations.find(connection, reservation_id, now)
        if stored is not None:
            emit_reservation(connection, "reservation.expired", stored)
    if expired:
        after_commit(connection, lambda: _announce_expired(expired, sum(freed.values())))
    return len(expired)


def _announce_expired(expired: list[str], units: int) -> None:
    for reservation_id in expired:
        logger.info("reservation.expired", reservation_id=reservation_id)
        metrics.count_reservation("expired")
    metrics.count_reserved_units("expired", units)


async def sweep(db: Database) -> int:
    """Expire every due reservation, a batch per unit of work: how many."""
    total = 0
    while True:
        expired = await db.write(lambda connection: expire_due(connection, utcnow()))
        total += expired
        if expired < SWEEP_BATCH:
            return total


async def expire_reservations(db: Database, *, every: timedelta = SWEEP_INTERVAL) -> None:
    """Runs for the life of the process."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            await sweep(db)
        except (DatabaseUnavailable, SQLAlchemyError):
            _errors.warning("could not expire reservations", exc_info=True)


async def purge_ended(db: Database, retention: timedelta) -> int:
    """Forget reservations that ended longer than `retention` ago: how many."""
    return await db.write(
        lambda connection: reservations.purge_ended(connection, utcnow() - retention)
    )


async def purge_reservations(
    db: Database, retention: timedelta, *, every: timedelta = PURGE_INTERVAL
) -> None:
    """Runs for the life of the process; deleting twice is harmless."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            purged = await purge_ended(db, retention)
        except (DatabaseUnavailable, SQLAlchemyError):
            _errors.warning("could not purge old reservations", exc_info=True)
        else:
            if purged:
                logger.info("reservations.purged", count=purged)
