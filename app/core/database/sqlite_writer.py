"""The one thread of the process that writes to a SQLite database, with group commit."""

from __future__ import annotations

import asyncio
import queue
import threading
from contextlib import suppress
from typing import Any, Generic, cast

from sqlalchemy import Connection, Engine

from app.core import metrics
from app.core.database.errors import as_problem
from app.core.database.units import (
    AfterCommit,
    T,
    Unit,
    collecting_after_commit,
    run_after_commit,
)
from app.core.errors import DatabaseUnavailable

# Most units one SQLite COMMIT takes: bounds how long the first unit of a batch waits.
MAX_BATCH = 64


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
        try:
            with collecting_after_commit(connection, self.callbacks):
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

    def fail(self, error: BaseException) -> None:
        self.error = as_problem(error)
        self.callbacks.clear()

    def settle(self) -> None:
        """On the caller's loop: report what was committed, then hand over the outcome."""
        if self.error is None:
            run_after_commit(self.callbacks)
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
