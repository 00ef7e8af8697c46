from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.core import migrations
from app.core.database import Database, async_url
from app.core.errors import SchemaNotCurrent
from devtools import databases


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield databases.sqlite_url(tmp_path / "empty.db")
        return
    if databases.POSTGRES_URL is None:
        pytest.skip(databases.SKIP_POSTGRES_REASON)
    with databases.postgres_database(migrate=False) as url:
        yield url


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(async_url(url))
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        await engine.dispose()
        return set(names) - {"alembic_version"}

    return asyncio.run(read())


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    migrations.upgrade(empty_database)
    assert _tables(empty_database) >= {"stock_levels", "movements"}

    command.downgrade(migrations.alembic_config(empty_database), "base")
    assert _tables(empty_database) == set()

    migrations.upgrade(empty_database)
    assert _tables(empty_database) >= {"stock_levels", "movements"}


def _refusal(url: str) -> SchemaNotCurrent | None:
    """What a database that needs the head revision says of `url` now; None when it answers."""

    async def ping() -> SchemaNotCurrent | None:
        db = Database(url, schema_revision=migrations.head_revision(url))
        try:
            await db.ping()
        except SchemaNotCurrent as refused:
            return refused
        finally:
            await db.dispose()
        return None

    return asyncio.run(ping())


def test_a_database_behind_head_is_refused_until_it_is_migrated(empty_database: str) -> None:
    head = migrations.head_revision(empty_database)
    never = _refusal(empty_database)
    assert never is not None
    assert (never.current, never.head) == (None, head)

    migrations.upgrade(empty_database, "0001")
    behind = _refusal(empty_database)
    assert behind is not None
    assert (behind.current, behind.head) == ("0001", head)
    assert behind.detail == (
        f"The database schema is at 0001, the service needs {head}: "
        "run the migrations (`inventory migrate`)."
    )

    migrations.upgrade(empty_database)
    assert _refusal(empty_database) is None
