"""The database of the process: SQLite through its one writer, PostgreSQL through two pools."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import SingletonThreadPool

from app.core.config import Settings
from app.core.database.errors import unavailable_as_problem, unavailable_reason
from app.core.database.listeners import (
    NO_BEGIN,
    begin_reads,
    configure_sqlite,
    discard_closed_connections,
    discard_replaced_files,
    require_schema,
)
from app.core.database.sqlite_writer import SqliteWriter
from app.core.database.units import (
    AfterCommit,
    T,
    Unit,
    collecting_after_commit,
    run_after_commit,
)
from app.core.logging import MASK


def async_url(database_url: str) -> URL:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async driver."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


class Database:
    """The database of the process: units of work to write, queries to read.

    A unit of work is a plain function of a SQLAlchemy `Connection`, run inside a transaction
    and committed before `write` returns its result; a query is the same, read-only. Data
    access stays synchronous code on both engines:

    - SQLite: every write goes to the process's `SqliteWriter` thread (one writer, group
      commit); reads run on the event loop through the standard library's `sqlite3`, which in
      WAL mode never waits for a writer.
    - PostgreSQL: each unit runs on a pooled asyncpg connection through SQLAlchemy's
      `run_sync`, so units on different rows run in parallel.

    A unit runs to its end even when its caller gives up (a client hangs up): it commits whole
    or not at all, and a retry with the same idempotency key learns which. Whatever means the
    database cannot answer right now — refused, reset or timed-out connections, a database that
    does not exist, a rejected password, a lock held past the busy timeout — leaves as
    `DatabaseUnavailable`. A pooled PostgreSQL connection the server has closed is replaced
    before use, so after an outage the pool renews itself.

    With `schema_revision`, a connection is handed out only once its database is at that
    Alembic revision, else `SchemaNotCurrent`. The check runs once per new connection, not
    per request: a database that is created or recreated after start-up is reached through
    new connections, so it is caught before any statement runs on it.
    """

    @classmethod
    def from_settings(cls, settings: Settings, *, schema_revision: str | None = None) -> Database:
        return cls(
            settings.database_url,
            pool_size=settings.database_pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            statement_timeout_seconds=settings.database_statement_timeout_seconds,
            schema_revision=schema_revision,
        )

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 5000,
        connect_timeout_seconds: float = 5.0,
        statement_timeout_seconds: float = 30.0,
        schema_revision: str | None = None,
    ):
        url = async_url(database_url)
        self._password = url.password
        self.is_sqlite = url.get_backend_name() == "sqlite"
        # Units still running for callers that gave up: referenced until they end.
        self._detached: set[asyncio.Task[Any]] = set()
        self._writer: SqliteWriter | None = None
        if self.is_sqlite:
            sqlite_url = url.set(drivername="sqlite")
            self._sqlite: Engine = create_engine(sqlite_url)
            # The writer's own engine: its one connection is opened, used and closed by the
            # writer thread alone.
            self._sqlite_writes: Engine = create_engine(sqlite_url, poolclass=SingletonThreadPool)
            # The writer emits its own BEGIN IMMEDIATE: an engine without connection event
            # listeners runs each statement without dispatching to any.
            begin_reads(self._sqlite)
            for engine in (self._sqlite, self._sqlite_writes):
                configure_sqlite(engine, busy_timeout_ms)
                discard_replaced_files(engine, url.database or "")
                if schema_revision is not None:
                    require_schema(engine, schema_revision)
            # One statement is its own consistent snapshot, so a single read needs no BEGIN.
            self._sqlite_single = self._sqlite.execution_options(**{NO_BEGIN: True})
            return
        # Two pools of `pool_size`, without overflow: at most as many connections per process
        # as one pool of `pool_size` plus as many overflow had, so a server sized for that
        # (max_connections) still has room.
        options: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_timeout": statement_timeout_seconds,
            "connect_args": {
                "timeout": connect_timeout_seconds,
                "command_timeout": statement_timeout_seconds,
            },
        }
        self._postgres: AsyncEngine = create_async_engine(url, **options)
        # Single reads get a pool of their own whose connections are in autocommit for good:
        # no BEGIN and ROLLBACK round trips, and no switching of the isolation level on every
        # checkout and check-in, as an `isolation_level` execution option would do.
        self._postgres_single = create_async_engine(url, isolation_level="AUTOCOMMIT", **options)
        for postgres in (self._postgres, self._postgres_single):
            discard_closed_connections(postgres)
            if schema_revision is not None:
                require_schema(postgres.sync_engine, schema_revision)

    @property
    def writer(self) -> SqliteWriter | None:
        """The SQLite writer, once the first write started it; None on PostgreSQL."""
        return self._writer

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a transaction and commit it; its result, or what it raised.

        Callbacks the unit registers with `after_commit` run after the commit, on the loop.
        """
        if self.is_sqlite:
            if self._writer is None:
                self._writer = SqliteWriter(self._sqlite_writes)
            return await asyncio.shield(self._writer.submit(unit))
        task = asyncio.ensure_future(self._write_postgres(unit))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        return await asyncio.shield(task)

    async def _write_postgres(self, unit: Unit[T]) -> T:
        callbacks: list[AfterCommit] = []

        def in_transaction(connection: Connection) -> T:
            with collecting_after_commit(connection, callbacks):
                return unit(connection)

        with unavailable_as_problem():
            async with self._postgres.begin() as connection:
                result = await connection.run_sync(in_transaction)
        run_after_commit(callbacks)
        return result

    async def read(self, query: Unit[T]) -> T:
        """Run read-only `query` in one transaction: a consistent view across its statements."""
        return await self._read(query, single=False)

    async def read_one(self, query: Unit[T]) -> T:
        """Run `query`, which makes exactly one statement, outside any transaction."""
        return await self._read(query, single=True)

    async def _read(self, query: Unit[T], *, single: bool) -> T:
        with unavailable_as_problem():
            if self.is_sqlite:
                engine = self._sqlite_single if single else self._sqlite
                with engine.connect() as connection:
                    return query(connection)
            pool = self._postgres_single if single else self._postgres
            async with pool.connect() as pooled:
                return await pooled.run_sync(query)

    async def ping(self) -> None:
        await self.read(_select_one)

    def reason(self, error: BaseException) -> str:
        """`unavailable_reason`, with this database's password masked should the driver
        quote it (asyncpg quotes the database and role names)."""
        reason = unavailable_reason(error)
        return reason.replace(self._password, MASK) if self._password else reason

    async def dispose(self) -> None:
        """Let every unit under way finish, then close every connection."""
        if self._detached:
            await asyncio.gather(*self._detached, return_exceptions=True)
        if self.is_sqlite:
            if self._writer is not None:
                await asyncio.to_thread(self._writer.stop)
                self._writer = None
            self._sqlite.dispose()
            self._sqlite_writes.dispose()
        else:
            await self._postgres.dispose()
            await self._postgres_single.dispose()


def _select_one(connection: Connection) -> None:
    connection.exec_driver_sql("SELECT 1")
