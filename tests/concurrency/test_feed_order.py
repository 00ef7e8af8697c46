"""The feed never skips an event, however transactions interleave (the outbox trap: ids are
handed out at insert, transactions commit in another order)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from app.core.database import Database
from app.services import events
from devtools import databases
from tests.support.feed import caught_up

# The advisory lock a transaction of the first test waits for: any number will do.
LOCK = 7207


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[Database]:
    await databases.truncate_postgres(postgres_url)
    db = Database(postgres_url)
    yield db
    await db.dispose()


def _emit(name: str, *, hold_seconds: float = 0.0) -> Callable[[Connection], None]:
    def unit(connection: Connection) -> None:
        events.emit(connection, "stock.changed", {"name": name})
        if hold_seconds:
            # Still in flight, holding its id, while later transactions commit.
            connection.exec_driver_sql(f"SELECT pg_sleep({hold_seconds})")

    return unit


def _emit_held(name: str) -> Callable[[Connection], None]:
    def unit(connection: Connection) -> None:
        events.emit(connection, "stock.changed", {"name": name})
        # Still in flight, holding its id, until the test lets go of the lock.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK})")

    return unit


def _waiting_for_the_lock(connection: Connection) -> bool:
    waiting = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
    return bool(connection.scalar(text(waiting)))


@asynccontextmanager
async def _lock(url: str) -> AsyncIterator[None]:
    """The advisory lock that `_emit_held` waits for, held meanwhile."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f"SELECT pg_advisory_lock({LOCK})")
        yield
    finally:
        await connection.close()


async def _names(db: Database, after: str | None) -> tuple[list[str], str | None]:
    page = await events.list_events(db, after=after, type_=None, limit=500)
    names = [item.data["name"] for item in page.items]
    return names, page.items[-1].id if page.items else after


async def test_an_event_committed_late_is_not_skipped(
    postgres: Database, postgres_url: str
) -> None:
    async with _lock(postgres_url):
        slow = asyncio.create_task(postgres.write(_emit_held("first")))
        async with asyncio.timeout(30):
            # Its event inserted (the lower id), the slow transaction waits for the lock.
            while not await postgres.read(_waiting_for_the_lock):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await postgres.write(_emit("second"))
        # Committed, but behind a transaction still in flight: not served yet.
        seen, after = await _names(postgres, None)
        assert seen == []
    await slow
    await caught_up(postgres)
    more, _ = await _names(postgres, after)
    assert more == ["first", "second"]


async def test_a_consumer_paging_during_concurrent_writes_sees_every_event_once(
    postgres: Database,
) -> None:
    written = [f"w{w}-{n}" for w in range(8) for n in range(15)]

    async def writer(w: int) -> None:
        for n in range(15):
            hold = 0.02 if (w + n) % 3 == 0 else 0.0
            await postgres.write(_emit(f"w{w}-{n}", hold_seconds=hold))

    writers = asyncio.gather(*(writer(w) for w in range(8)))
    seen: list[str] = []
    after: str | None = None
    while not writers.done():
        names, after = await _names(postgres, after)
        seen += names
        await asyncio.sleep(0)
    await writers
    # What is left settles once every transaction of the server that began before it ended.
    async with asyncio.timeout(10):
        while len(seen) < len(written):
            names, after = await _names(postgres, after)
            seen += names
            await asyncio.sleep(0.01)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(written)
