"""The engines, their transactions, and the SQLite settings that make concurrent writers safe."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import CursorResult, Engine, Executable, Insert, ScalarResult, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable, SchemaNotCurrent
from app.core.logging import MASK

_WRITE = "inventory_write"
_NO_BEGIN = "inventory_no_begin"
_AFTER_COMMIT = "inventory_after_commit"
_FILE_IDENTITY = "inventory_file_identity"

logger = logging.getLogger("app.database")

AfterCommit = Callable[[], None]

# SQLSTATE classes that mean "not now" rather than "never": connection exceptions (08),
# a role or password the server rejects (28), a database that does not exist (3D) — both
# fixed by the operator, not by the caller —, transaction rollbacks such as deadlocks and
# serialization failures (40), insufficient resources (53), operator intervention such as
# shutdown, start-up or cancel (57), and system errors (58).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "40", "53", "57", "58"})

# SQLite result codes that mean the same: busy or locked (past the busy timeout), I/O
# error, disk full, cannot open. SQLite also files "no such table" or a syntax error under
# OperationalError, so the class alone says nothing there.
_TRANSIENT_SQLITE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot answer right now, so a retry may work.

    asyncpg lets socket errors through unwrapped: a refused or reset connection is an
    `OSError`, and a connect timeout a `TimeoutError` (itself an `OSError`). What the server
    refuses at connect time (a missing database, a rejected password) arrives as a plain
    `DBAPIError` whose `orig` carries the SQLSTATE.
    """
    if isinstance(error, OSError | PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        code = getattr(error.orig, "sqlite_errorcode", None)
        # Extended result codes carry the primary code in their low byte.
        return isinstance(code, int) and code & 0xFF in _TRANSIENT_SQLITE_CODES
    if isinstance(error, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def unavailable_reason(error: BaseException) -> str:
    """Why the database could not answer, in the driver's words and on one line, e.g.
    `InvalidCatalogNameError: database "x" does not exist`."""
    if isinstance(error, DatabaseUnavailable) and error.__cause__ is not None:
        error = error.__cause__
    # SQLAlchemy wraps the driver's error in `orig`, and its asyncpg adapter wraps it again.
    while isinstance(inner := getattr(error, "orig", None), BaseException):
        error = inner
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def schema_revision(dbapi_connection: Any) -> str | None:
    """The Alembic revision of the database behind a driver connection; None if never migrated."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
    except Exception as error:
        if "alembic_version" not in str(error):
            raise
        return None
    finally:
        cursor.close()
    return None if row is None else str(row[0])


@contextmanager
def _unavailable_as_problem() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if is_unavailable(error):
            raise DatabaseUnavailable("The database cannot answer right now.") from error
        raise


class Connection(Protocol):
    """What services run their statements on: SQLAlchemy's `AsyncConnection` on PostgreSQL,
    an `InlineConnection` on SQLite."""

    @property
    def info(self) -> dict[Any, Any]: ...

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]: ...

    async def exec_driver_sql(self, sql: str, parameters: Any = None) -> CursorResult[Any]: ...


class InlineConnection:
    """A synchronous SQLite connection behind the awaitable calls of `Connection`.

    SQLite is a library reading a local file, not a server: a one-row read takes tens of
    microseconds, while handing each call to aiosqlite's thread and back cost ten times that
    and, under load, queued every hop behind the GIL (bench/RESULTS.md). So the statements
    run on the event loop itself; none of these methods yields to it.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: SyncConnection) -> None:
        self._connection = connection

    @property
    def info(self) -> dict[Any, Any]:
        return self._connection.info

    @property
    def dialect(self) -> Dialect:
        return self._connection.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._connection.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self._connection.scalar(statement, parameters)

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]:
        return self._connection.scalars(statement, parameters)

    async def exec_driver_sql(self, sql: str, parameters: Any = None) -> CursorResult[Any]:
        return self._connection.exec_driver_sql(sql, parameters)


def async_url(database_url: str) -> URL:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async driver."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


class Database:
    """The database of the process, handing out read and write transactions.

    PostgreSQL is reached through asyncpg; SQLite through the standard library's driver, its
    calls made on the event loop (see `InlineConnection`).

    SQLite admits one writer at a time. Write transactions there start with
    `BEGIN IMMEDIATE`, so a writer takes the lock up front instead of failing half-way with
    "database is locked", and writers of this process queue on an asyncio lock rather than
    in SQLite's busy handler.

    Whatever means the database cannot answer right now — refused, reset or timed-out
    connections, a database that does not exist, a rejected password, a lock held past the
    busy timeout — leaves as `DatabaseUnavailable`. A pooled PostgreSQL connection the
    server has closed is replaced before use, so after an outage the pool renews itself
    instead of failing the first request on each.

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
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self._sqlite: Engine = create_engine(url.set(drivername="sqlite"))
            _configure_sqlite(self._sqlite, busy_timeout_ms)
            _discard_replaced_files(self._sqlite, url.database or "")
            if schema_revision is not None:
                _require_schema(self._sqlite, schema_revision)
            self._sqlite_write = self._sqlite.execution_options(**{_WRITE: True})
            # One statement is its own consistent snapshot, so a single read needs no BEGIN.
            self._sqlite_single = self._sqlite.execution_options(**{_NO_BEGIN: True})
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
        for engine in (self._postgres, self._postgres_single):
            _discard_closed_connections(engine)
            if schema_revision is not None:
                _require_schema(engine.sync_engine, schema_revision)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Callbacks registered with `after_commit` run once the commit has succeeded; after a
        rollback they are dropped.
        """
        callbacks: list[AfterCommit] = []
        async with self._begin() as connection:
            # `info` belongs to the pooled DBAPI connection and outlives this transaction. It is
            # held here because an invalidated connection refuses to hand it out again.
            info = connection.info
            info[_AFTER_COMMIT] = callbacks
            try:
                yield connection
            finally:
                info.pop(_AFTER_COMMIT, None)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # The change is committed and the caller must hear so; a failed report must
                # not turn that into an error.
                logger.exception("after-commit callback failed")

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[Connection]:
        with _unavailable_as_problem():
            if self._write_lock is None:
                async with self._postgres.begin() as connection:
                    yield connection
                return
            # Writers of this process queue here, on the event loop, and not in SQLite's busy
            # handler, which would stall the loop while the holder waits for it to run.
            async with self._write_lock:
                with self._sqlite_write.connect() as sqlite_connection:
                    sqlite_connection.begin()
                    try:
                        yield InlineConnection(sqlite_connection)
                    except BaseException:
                        sqlite_connection.rollback()
                        raise
                    # The statements were CPU; the commit waits for the disk (synchronous=
                    # FULL), as long as the disk likes. Off the loop, other requests go on
                    # meanwhile: a slow fsync held inline made products look-ups time out.
                    await asyncio.to_thread(sqlite_connection.commit)

    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A read-only transaction with a consistent view."""
        return self._connect(single=False)

    def read_one(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for exactly one read statement, outside any transaction."""
        return self._connect(single=True)

    @asynccontextmanager
    async def _connect(self, *, single: bool) -> AsyncIterator[Connection]:
        with _unavailable_as_problem():
            if self.is_sqlite:
                with (self._sqlite_single if single else self._sqlite).connect() as connection:
                    yield InlineConnection(connection)
                return
            async with (self._postgres_single if single else self._postgres).connect() as pooled:
                yield pooled

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.exec_driver_sql("SELECT 1")

    def reason(self, error: BaseException) -> str:
        """`unavailable_reason`, with this database's password masked should the driver
        quote it (asyncpg quotes the database and role names)."""
        reason = unavailable_reason(error)
        return reason.replace(self._password, MASK) if self._password else reason

    async def dispose(self) -> None:
        if self.is_sqlite:
            self._sqlite.dispose()
        else:
            await self._postgres.dispose()
            await self._postgres_single.dispose()


def insert_unless_exists(
    model: type[Any], index_elements: list[str], **values: Any
) -> dict[str, Insert]:
    """`INSERT … ON CONFLICT (index_elements) DO NOTHING` for each engine, by dialect name."""
    return {
        name: dialect.insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=index_elements)
        for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
    }


def after_commit(connection: Connection, callback: AfterCommit) -> None:
    """Run `callback` once the transaction of `connection` has committed, never on rollback."""
    try:
        callbacks: list[AfterCommit] = connection.info[_AFTER_COMMIT]
    except KeyError:
        raise RuntimeError("after_commit needs a connection from Database.transaction()") from None
    callbacks.append(callback)


def _discard_closed_connections(engine: AsyncEngine) -> None:
    """Replace, at checkout, a pooled connection whose socket the server has closed (it
    restarted, or an outage cut it). asyncpg knows this without a round trip;
    `pool_pre_ping` would ask the server with three (BEGIN, a ping, ROLLBACK) on every
    checkout (bench/RESULTS.md)."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError()


def _discard_replaced_files(engine: Engine, path: str) -> None:
    """Replace, at checkout, a pooled SQLite connection whose file was deleted or replaced
    since it was opened (the database dropped, and perhaps recreated): it would go on reading
    and writing the unlinked file, which nobody else sees. A `stat` per checkout tells."""

    def identity() -> tuple[int, int] | None:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return None
        return status.st_dev, status.st_ino

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_FILE_IDENTITY] = identity()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if record.info[_FILE_IDENTITY] != identity():
            raise DisconnectionError()


def _require_schema(engine: Engine, revision: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        current = schema_revision(dbapi_connection)
        # The driver opened a transaction for the check; the connection's user did not.
        dbapi_connection.rollback()
        if current != revision:
            # SQLAlchemy closes the connection, so the next checkout connects and checks anew.
            raise SchemaNotCurrent(current=current, head=revision)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver's own transaction handling is turned off so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(_NO_BEGIN, False):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE, False) else "BEGIN")
