"""Reading the event feed in tests: when it has caught up with what was committed."""

from __future__ import annotations

import asyncio

from sqlalchemy import Connection, exists, select

from app.core.database import Database
from app.models import Event
from app.repositories import events


def _held_back(connection: Connection) -> bool:
    horizon = events.horizon(connection)
    if horizon is None:
        return False
    return bool(connection.scalar(select(exists().where(Event.txid >= horizon))))


async def caught_up(db: Database) -> None:
    """Until the feed serves every event committed so far. On PostgreSQL it serves an event
    once every transaction of this database older than the event's has ended."""
    async with asyncio.timeout(30):
        while await db.read(_held_back):  # noqa: ASYNC110 - the horizon offers no event
            await asyncio.sleep(0.02)
