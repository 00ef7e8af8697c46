"""Reading the event feed in tests: when it has caught up with what was committed."""

from __future__ import annotations

import asyncio

from sqlalchemy import Connection, text

from app.core.database import Database


def _held_back(connection: Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    unsettled = (
        "SELECT EXISTS (SELECT 1 FROM events"
        " WHERE txid >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint)"
    )
    return bool(connection.scalar(text(unsettled)))


async def caught_up(db: Database) -> None:
    """Until the feed serves every event committed so far. On PostgreSQL it serves an event
    once every transaction older than the event's has ended, in the whole cluster: an open
    transaction in another database of the same server holds the feed back meanwhile."""
    async with asyncio.timeout(30):
        while await db.read(_held_back):  # noqa: ASYNC110 - the horizon offers no event
            await asyncio.sleep(0.02)
