"""The engines, the one writer per process, and the SQLite settings that make writes safe."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, SingletonThreadPool

from app.core import metrics
from app.core.config import Settings
from app.core.errors import DatabaseUnavailable, SchemaNotCurrent
from app.core.logging import MASK

_NO_BEGIN = "inventory_no_begin"
_AFTER_COMMIT = "inventory_after_commit"
_FILE_IDENTITY = "inventory_file_identity"

logger = logging.getLogger("app.database")

AfterCommit = Callable[[], None]
T = TypeVar("T")
# A unit of work (or a query): plain data-access code on a connection inside a transaction.
Unit = Callable[[Connection], T]
# Most units one SQLite COMMIT takes: bounds how long the first unit of a batch waits.
MAX_BATCH = 64

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


def async_url(database_url: str) -> URL:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async driver."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


class _Job(Generic[T]):
    """One unit of work on its way through the SQLite writer, and the future its caller awaits."""

    __slots__ = ("callbacks", "error", "future", "loop", "result", "unit")

    def __init__(self, unit: Unit[T], loop: asyncio.AbstractEventLoop) -> None:
        self.unit = unit
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.callbacks: list[AfterCommit] = []
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self, connection: Connection, *, savepoint: bool) -> None:
        """The unit, in a savepoint of its own when it shares its transaction: a unit that
        raises undoes only itself. A failure to undo it fails the whole batch."""
        connection.info[_AFTER_COMMIT] = self.callbacks
        try:
            if savepoint:
                connection.exec_driver_sql("SAVEPOINT unit")
            self.result = self.unit(connection)
            if savepoint:
                connection.exec_driver_sql("RELEASE unit")
        except Exception as error:
            self.fail(error)
            if savepoint:
                connection.exec_driver_sql("ROLLBACK TO unit")
                connection.exec_driver_sql("RELEASE unit")
        finally:
            connection.info.pop(_AFTER_COMMIT, None)

    def fail(self, error: BaseException) -> None:
        self.error = _as_problem(error)
        self.callbacks.clear()

    def settle(self) -> None:
        """On the caller's loop: report what was committed, then hand over the outcome."""
        if self.error is None:
            _run_after_commit(self.callbacks)
        if self.future.cancelled():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(cast(T, self.result))


class SqliteWriter:
    """The one thread of the process that writes to a SQLite database, on its one connection.

    Units of work queue here and are run in the order they came, each in a savepoint of its
    own when there are several; the units that queued while the last batch committed are
    committed together, with one COMMIT and so one fsync. At low load a batch is a single
    unit: there is no timer.
    Waiting for the write lock (`busy_timeout`, another process writing) and for the disk
    happens in this thread, never on an event loop.
    """

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.units = 0

    def submit(self, unit: Unit[T]) -> asyncio.Future[T]:
        job = _Job(unit, asyncio.get_running_loop())
        self._jobs.put(job)
        return job.future

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[_Job[Any]]) -> None:
        try:
            with self._engine.connect() as connection:
                transaction = connection.begin()
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                # A unit alone in its transaction needs no savepoint: when it fails, the
                # transaction is rolled back instead of committed.
                alone = len(batch) == 1
                for job in batch:
                    job.run(connection, savepoint=not alone)
                try:
                    if alone and batch[0].error is not None:
                        transaction.rollback()
                    else:
                        transaction.commit()
                except Exception as error:
                    # SQLite may leave the transaction open after a refused COMMIT: end it
                    # at the driver, below SQLAlchemy's own (already finished) transaction.
                    connection.connection.rollback()
                    # Nothing of the batch was kept, whatever each unit did: every unit that
                    # would have committed is told so, and may be retried.
                    failed = DatabaseUnavailable("The database could not commit this change.")
                    failed.__cause__ = error
                    for job in batch:
                        job.fail(failed)
        except Exception as error:
            # No connection, or no BEGIN (the lock held past the busy timeout, say).
            for job in batch:
                job.fail(error)
        self.batches += 1
        self.units += len(batch)
        metrics.observe_write_batch(len(batch))
        for job in batch:
            # A loop that has closed has nobody left waiting; the writer goes on for the rest.
            with suppress(RuntimeError):
                job.loop.call_soon_threadsafe(job.settle)


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
            _begin_reads(self._sqlite)
            for engine in (self._sqlite, self._sqlite_writes):
                _configure_sqlite(engine, busy_timeout_ms)
                _discard_replaced_files(engine, url.database or "")
                if schema_revision is not None:
                    _require_schema(engine, schema_revision)
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
        for postgres in (self._postgres, self._postgres_single):
            _discard_closed_connections(postgres)
            if schema_revision is not None:
                _require_schema(postgres.sync_engine, schema_revision)

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
            connection.info[_AFTER_COMMIT] = callbacks
            try:
                return unit(connection)
            finally:
                connection.info.pop(_AFTER_COMMIT, None)

        with _unavailable_as_problem():
            async with self._postgres.begin() as connection:
                result = await connection.run_sync(in_transaction)
        _run_after_commit(callbacks)
        return result

    async def read(self, query: Unit[T]) -> T:
        """Run read-only `query` in one transaction: a consistent view across its statements."""
        return await self._read(query, single=False)

    async def read_one(self, query: Unit[T]) -> T:
        """Run `query`, which makes exactly one statement, outside any transaction."""
        return await self._read(query, single=True)

    async def _read(self, query: Unit[T], *, single: bool) -> T:
        with _unavailable_as_problem():
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


def _as_problem(error: BaseException) -> BaseException:
    if is_unavailable(error):
        problem = DatabaseUnavailable("The database cannot answer right now.")
        problem.__cause__ = error
        return problem
    return error


def _run_after_commit(callbacks: list[AfterCommit]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The change is committed and the caller must hear so; a failed report must not
            # turn that into an error.
            logger.exception("after-commit callback failed")


def after_commit(connection: Connection, callback: AfterCommit) -> None:
    """Run `callback` once the transaction of `connection` has committed, never on rollback."""
    try:
        callbacks: list[AfterCommit] = connection.info[_AFTER_COMMIT]
    except KeyError:
        raise RuntimeError("after_commit needs a connection from Database.write()") from None
    callbacks.append(callback)


def _discard_closed_connections(engine: AsyncEngine) -> None:
    """Replace, at checkout, a pooled connection whose socket the server has closed (it
    restarted, or an outage cut it). asyncpg knows this without a round trip;
    `pool_pre_ping` would ask the server with three (BEGIN, a ping, ROLLBACK) on every
    checkout (docs/performance.md)."""

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


def _begin_reads(engine: Engine) -> None:
    """BEGIN for reads of several statements (one snapshot), none for a single statement."""

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(_NO_BEGIN, False):
            connection.exec_driver_sql("BEGIN")
