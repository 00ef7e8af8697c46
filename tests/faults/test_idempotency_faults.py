"""Idempotency keys through database outages: nothing is sold twice, nothing is stuck, and
the background purge outlives the outage."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.context import Caller
from app.core.database import Database, T, Unit
from app.core.errors import DatabaseUnavailable, ProblemError
from app.services import idempotency
from devtools import databases
from devtools.servers import free_port

CALLER = Caller(actor="default", request_id="fault-test")


class NeverWrites:
    """For work that fails before there is an answer to write down."""

    def result(self, result: None, /) -> idempotency.Written:
        raise AssertionError("no result to write down")

    def refusal(self, error: ProblemError, /) -> idempotency.Written:
        raise AssertionError("no refusal to write down")


NEVER_WRITES = NeverWrites()


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
    db = OutageAfterFirstTransaction(databases.fresh_sqlite(sqlite_template, tmp_path))
    original = DatabaseUnavailable("the work itself failed")

    async def work(_claim: idempotency.Claim[None] | None) -> None:
        raise original

    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await idempotency.run_once(
                db,
                CALLER.actor,
                key="k-1",
                request_fingerprint="f",
                ttl=timedelta(hours=24),
                lease=timedelta(seconds=60),
                writer=NEVER_WRITES,
                work=work,
            )
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
