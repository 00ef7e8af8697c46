from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
from app.core.database import Database, async_url
from app.main import create_app
from tests import databases
from tests.conftest import make_settings


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

    migrations.command.downgrade(migrations.alembic_config(empty_database), "base")
    assert _tables(empty_database) == set()

    migrations.upgrade(empty_database)
    assert _tables(empty_database) >= {"stock_levels", "movements"}


def test_app_refuses_to_start_on_a_schema_behind_head(empty_database: str) -> None:
    app = create_app(make_settings(empty_database))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(migrations.SchemaNotCurrent, match="run the migrations"):
        asyncio.run(start())


def test_current_revision_is_head_after_upgrade(empty_database: str) -> None:
    migrations.upgrade(empty_database)

    async def current() -> str | None:
        db = Database(empty_database)
        try:
            return await migrations.current_revision(db)
        finally:
            await db.dispose()

    assert asyncio.run(current()) == migrations.head_revision(empty_database)
