"""Throw-away databases for the tests and `make stress`, built by running the migrations."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.core import migrations
from app.models import Base

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL") or None
SKIP_POSTGRES_REASON = "TEST_POSTGRES_URL is not set: PostgreSQL tests skipped"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _admin_dsn() -> str:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(), timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def unborn_postgres_url() -> str:
    """The URL of a PostgreSQL database with a fresh name, not created yet."""
    name = f"inventory_test_{uuid.uuid4().hex[:12]}"
    return make_url(_admin_dsn()).set(database=name).render_as_string(hide_password=False)


async def create_postgres(url: str) -> None:
    await _admin(f'CREATE DATABASE "{make_url(url).database}"')


async def drop_postgres(url: str) -> None:
    """Drop it even while connections are open: they are terminated, as by an operator."""
    await _admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@contextmanager
def postgres_database(*, migrate: bool = True) -> Iterator[str]:
    """A new, empty (or migrated) PostgreSQL database, dropped afterwards."""
    url = unborn_postgres_url()
    asyncio.run(create_postgres(url))
    try:
        if migrate:
            migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(drop_postgres(url))


class DatabaseSlot:
    """Where a test's database will be, on either engine; nothing is there until `create`.

    PostgreSQL: a database with a fresh name on the test server. SQLite: a file in a
    directory that does not exist yet (SQLite creates a missing file, not a directory).
    """

    def __init__(self, engine: str, directory: Path) -> None:
        self.engine = engine
        if engine == "sqlite":
            self.file: Path | None = directory / "not-yet" / "inventory.db"
            self.url = sqlite_url(self.file)
        else:
            self.file = None
            self.url = unborn_postgres_url()

    async def create(self) -> None:
        if self.file is None:
            await create_postgres(self.url)
        else:
            self.file.parent.mkdir(exist_ok=True)

    async def migrate(self) -> None:
        # Alembic runs its own event loop, so not on this one.
        await asyncio.to_thread(migrations.upgrade, self.url)

    async def drop(self) -> None:
        if self.file is None:
            await drop_postgres(self.url)
            return
        for suffix in ("", "-wal", "-shm"):
            self.file.with_name(self.file.name + suffix).unlink(missing_ok=True)


@contextmanager
def sqlite_template(directory: Path) -> Iterator[Path]:
    """A migrated SQLite file to copy for each test: faster than migrating every time."""
    template = directory / "template.db"
    migrations.upgrade(sqlite_url(template))
    yield template


def fresh_sqlite(template: Path, directory: Path) -> str:
    path = directory / f"{uuid.uuid4().hex}.db"
    shutil.copyfile(template, path)
    return sqlite_url(path)


TABLES = ", ".join(table.name for table in Base.metadata.sorted_tables)


async def truncate_postgres(url: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
