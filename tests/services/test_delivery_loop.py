"""The delivery loop through an outage: a service started before its database (or its
migrations) says so once, and once more when deliveries resume, not on every cycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from app.clients.webhooks import WebhookSender
from app.core.database import Database, T, Unit
from app.core.migrations import head_revision
from app.services.deliveries import Dispatcher
from devtools import databases


class CountingDatabase(Database):
    """Counts the polling cycles of a delivery loop: each starts with one single read."""

    cycles = 0

    async def read_one(self, query: Unit[T]) -> T:
        self.cycles += 1
        return await super().read_one(query)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110 - polling with a deadline
            await asyncio.sleep(0.01)


async def test_the_loop_says_once_that_it_is_paused_and_once_that_it_resumed(
    slot: databases.DatabaseSlot, caplog: pytest.LogCaptureFixture
) -> None:
    db = CountingDatabase(slot.url, schema_revision=head_revision(slot.url))
    sender = WebhookSender(timeout_seconds=1, allowed_hosts=())
    dispatcher = Dispatcher(db, sender, retry_base_seconds=1, timeout_seconds=1, poll_seconds=0.01)
    with caplog.at_level(logging.INFO, logger="app.webhooks"):
        loop = asyncio.create_task(dispatcher.run())
        try:
            await _until(lambda: db.cycles >= 5)  # no database
            await slot.create()
            seen = db.cycles
            await _until(lambda: db.cycles >= seen + 5)  # a database, not migrated
            await slot.migrate()
            await _until(lambda: "webhook deliveries resumed" in caplog.messages)
            seen = db.cycles
            await _until(lambda: db.cycles >= seen + 5)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await sender.close()
            await db.dispose()
    lines = [record for record in caplog.records if record.name == "app.webhooks"]
    assert [record.levelno for record in lines] == [logging.WARNING, logging.INFO]
    assert lines[0].getMessage().startswith("webhook deliveries paused, the database cannot")
    assert all(record.exc_info is None for record in lines)
