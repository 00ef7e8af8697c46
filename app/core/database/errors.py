"""Which database errors mean "cannot answer right now", and how they are told."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.errors import DatabaseUnavailable

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


@contextmanager
def unavailable_as_problem() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if is_unavailable(error):
            raise DatabaseUnavailable("The database cannot answer right now.") from error
        raise


def as_problem(error: BaseException) -> BaseException:
    if is_unavailable(error):
        problem = DatabaseUnavailable("The database cannot answer right now.")
        problem.__cause__ = error
        return problem
    return error
