"""The engine, its transactions, and the SQLite settings that make concurrent writers safe."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable

_WRITE = "inventory_write"
_NO_BEGIN = "inventory_no_begin"
_AFTER_COMMIT = "inventory_after_commit"

logger = logging.getLogger("app.database")

AfterCommit = Callable[[], None]

# SQLSTATE classes that mean "not now" rather than "never": connection exceptions (08),
# transaction rollbacks such as deadlocks and serialization failures (40), insufficient
# resources (53), operator intervention such as shutdown, start-up or cancel (57), and
# system errors (58).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})

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
    `OSError`, and a connect timeout a `TimeoutError` (itself an `OSError`).
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


@contextmanager
def _unavailable_as_problem() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if is_unavailable(error):
            raise DatabaseUnavailable("The database cannot answer right now.") from error
        raise


def async_url(database_url: str) -> URL:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async driver."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


class Database:
    """One engine for the process, handing out read and write transactions.

    SQLite admits one writer at a time. Write transactions there start with
    `BEGIN IMMEDIATE`, so a writer takes the lock up front instead of failing half-way
    with "database is locked", and writers of this process queue on an asyncio lock
    rather than busy-polling the file.

    Whatever means the database cannot answer right now — refused, reset or timed-out
    connections, a lock held past the busy timeout — leaves as `DatabaseUnavailable`.
    PostgreSQL connections are checked before use, so after an outage the pool replaces
    dead connections by itself instead of failing the first request on each.
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            pool_size=settings.database_pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            statement_timeout_seconds=settings.database_statement_timeout_seconds,
        )

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 5000,
        connect_timeout_seconds: float = 5.0,
        statement_timeout_seconds: float = 30.0,
    ):
        url = async_url(database_url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if not self.is_sqlite:
            options |= {
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "pool_timeout": statement_timeout_seconds,
                "connect_args": {
                    "timeout": connect_timeout_seconds,
                    "command_timeout": statement_timeout_seconds,
                },
            }
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        # One statement is its own consistent snapshot on both engines, so a single read
        # needs no BEGIN and ROLLBACK: two round trips on PostgreSQL, two thread hand-offs
        # on aiosqlite. SQLite's connections are in autocommit already (see below); there
        # the option only stops our `begin` listener, as SQLAlchemy's AUTOCOMMIT level would
        # reset the connection's isolation on every check-in.
        single = {_NO_BEGIN: True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        self._single_read_engine = self.engine.execution_options(**single)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
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
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_as_problem():
            if self._write_lock is None:
                async with self.engine.begin() as connection:
                    yield connection
                return
            async with self._write_lock, self._write_engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction with a consistent view."""
        with _unavailable_as_problem():
            async with self.engine.connect() as connection:
                yield connection

    @asynccontextmanager
    async def read_one(self) -> AsyncIterator[AsyncConnection]:
        """A connection for exactly one read statement, outside any transaction."""
        with _unavailable_as_problem():
            async with self._single_read_engine.connect() as connection:
                yield connection

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


def after_commit(connection: AsyncConnection, callback: AfterCommit) -> None:
    """Run `callback` once the transaction of `connection` has committed, never on rollback."""
    try:
        callbacks: list[AfterCommit] = connection.info[_AFTER_COMMIT]
    except KeyError:
        raise RuntimeError("after_commit needs a connection from Database.transaction()") from None
    callbacks.append(callback)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver's own transaction handling is turned off so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(_NO_BEGIN, False):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE, False) else "BEGIN")
