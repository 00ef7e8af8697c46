"""The feed never skips an event, however transactions interleave (the outbox trap: ids are
handed out at insert, transactions commit in another order), and only this database's own
transactions hold it back: not those of another database on the same server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import Connection

from app.clients.webhooks import WebhookSender
from app.core.database import Database
from app.schemas.webhooks import WebhookIn
from app.services import events, webhooks
from app.services.deliveries import Dispatcher
from devtools import databases
from tests.support.receiver import receiving


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[Database]:
    await databases.truncate_postgres(postgres_url)
    db = Database(postgres_url)
    yield db
    await db.dispose()


@pytest.fixture
async def neighbour() -> AsyncIterator[asyncpg.Connection]:
    """A session on another database of the same server, in a transaction that has written
    (so it has a transaction id) and stays open, idle, until the test ends."""
    url = databases.unborn_postgres_url()
    await databases.create_postgres(url)
    connection = await asyncpg.connect(url, timeout=10)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("CREATE TABLE held (x int); INSERT INTO held VALUES (1)")
        yield connection
        await transaction.rollback()
    finally:
        await connection.close()
        await databases.drop_postgres(url)


def _emit(name: str) -> Callable[[Connection], None]:
    def unit(connection: Connection) -> None:
        events.emit(connection, "stock.changed", {"name": name})

    return unit


async def _names(db: Database, after: str | None) -> tuple[list[str], str | None]:
    page = await events.list_events(db, after=after, type_=None, limit=500)
    names = [item.data["name"] for item in page.items]
    return names, page.items[-1].id if page.items else after


async def _insert_event(connection: asyncpg.Connection, name: str) -> None:
    await connection.execute(
        "INSERT INTO events (type, occurred_at, data) VALUES ('stock.changed', now(), $1)",
        f'{{"name": "{name}"}}',
    )


@pytest.mark.parametrize("first_write", ["its event", "another row"])
async def test_an_event_committed_late_is_not_skipped(
    postgres: Database, postgres_url: str, first_write: str
) -> None:
    """A transaction has its id from its first write on, which may come before it inserts its
    events: from then on, whatever later transactions commit, the feed waits for it."""
    slow = await asyncpg.connect(postgres_url, timeout=10)
    try:
        transaction = slow.transaction()
        await transaction.start()
        if first_write == "its event":
            await _insert_event(slow, "first")
        else:
            # Gives the transaction its id, as a first write of any other row would.
            await slow.execute("SELECT pg_current_xact_id()")
        await postgres.write(_emit("second"))
        # Committed, but behind a transaction still in flight: not served yet.
        seen, after = await _names(postgres, None)
        assert seen == []
        if first_write == "another row":
            await _insert_event(slow, "first")
        await transaction.commit()
    finally:
        await slow.close()
    more, _ = await _names(postgres, after)
    assert more == ["first", "second"]


async def test_a_consumer_paging_during_a_burst_of_writers_sees_every_event_once_in_order(
    postgres: Database,
) -> None:
    writers, each = 16, 10
    written = [f"w{w:02}-{n:02}" for w in range(writers) for n in range(each)]

    async def writer(w: int) -> None:
        for n in range(each):
            await postgres.write(_emit(f"w{w:02}-{n:02}"))

    burst = asyncio.gather(*(writer(w) for w in range(writers)))
    seen: list[str] = []
    after: str | None = None
    while not burst.done():
        names, after = await _names(postgres, after)
        seen += names
        await asyncio.sleep(0)
    await burst
    # What is left settles once every transaction of this database that began before it ended.
    async with asyncio.timeout(10):
        while len(seen) < len(written):
            names, after = await _names(postgres, after)
            seen += names
            await asyncio.sleep(0.01)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == written
    # One writer's transactions follow each other: the feed shows them in that order.
    for w in range(writers):
        mine = [name for name in seen if name.startswith(f"w{w:02}-")]
        assert mine == sorted(mine)


async def test_a_transaction_in_another_database_does_not_hold_the_feed_back(
    postgres: Database, neighbour: asyncpg.Connection
) -> None:
    await postgres.write(_emit("while the neighbour's transaction is open"))
    async with asyncio.timeout(1):
        while not (await _names(postgres, None))[0]:  # noqa: ASYNC110 - a deadline
            await asyncio.sleep(0.01)


async def test_a_transaction_in_another_database_does_not_hold_deliveries_back(
    postgres: Database, neighbour: asyncpg.Connection
) -> None:
    sender = WebhookSender(timeout_seconds=1, allowed_hosts=("127.0.0.1",))
    dispatcher = Dispatcher(postgres, sender, retry_base_seconds=1, timeout_seconds=1)
    async with receiving() as receiver:
        created = await webhooks.create_endpoint(
            postgres, sender, body=WebhookIn(url=receiver.url, events=["*"])
        )
        receiver.secrets.append(created.secret)
        loop = asyncio.create_task(dispatcher.run())
        try:
            await postgres.write(_emit("delivered while the neighbour's transaction is open"))
            await receiver.wait_for(1, seconds=2)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await sender.close()
