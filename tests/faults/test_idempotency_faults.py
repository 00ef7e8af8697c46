"""Idempotency keys through database outages: nothing is sold twice, nothing is stuck, and
the background purge outlives the outage."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from app.api.idempotency import IdempotentRequest
from app.core.context import Caller
from app.core.database import Database, T, Unit
from app.core.errors import DatabaseUnavailable
from app.services import idempotency
from devtools import databases
from devtools.servers import free_port
from tests.support.service import make_settings

CALLER = Caller(actor="default", request_id="fault-test")


class OutageAfterFirstTransaction(Database):
    """Claims the key, then the database goes away."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.transactions = 0

    async def write(self, unit: Unit[T]) -> T:
        self.transactions += 1
        if self.transactions > 1:
            raise DatabaseUnavailable("The database cannot answer right now.")
        return await super().write(unit)


async def test_a_release_that_fails_in_an_outage_does_not_hide_the_original_error(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = databases.fresh_sqlite(sqlite_template, tmp_path)
    db = OutageAfterFirstTransaction(url)
    request = IdempotentRequest(make_settings(url), "POST", "/inventory/purchase", "k-1")
    original = DatabaseUnavailable("the work itself failed")

    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            async with request.claim(db, CALLER, None):
                raise original
    finally:
        await db.dispose()

    assert raised.value is original
    assert db.transactions == 2  # the claim, then the release that failed


async def test_the_purge_of_expired_keys_outlives_a_database_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    purger = asyncio.create_task(
        idempotency.purge_idempotency_keys(unreachable, every=timedelta(seconds=0.01))
    )
    try:
        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(30):
                while caplog.text.count("could not purge expired idempotency keys") < 3:
                    assert not purger.done(), purger.exception()
                    await asyncio.sleep(0.01)
        assert not purger.done()
    finally:
        purger.cancel()
        await asyncio.gather(purger, return_exceptions=True)
        await unreachable.dispose()
