"""Which database errors mean "cannot answer right now" (503) and which are bugs (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.database import is_unavailable


def _sqlite_error(sql: str, tmp_path: Path) -> sqlite3.Error:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute(sql)
    except sqlite3.Error as error:
        return error
    finally:
        other.close()
        holder.close()
    raise AssertionError(f"{sql!r} did not fail")


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_sqlite_lock_held_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    orig = _sqlite_error("BEGIN IMMEDIATE", tmp_path)
    assert is_unavailable(OperationalError("BEGIN IMMEDIATE", {}, orig))


@pytest.mark.parametrize("sql", ["SELECT * FROM missing", "SELEC 1"])
def test_sqlite_schema_and_syntax_errors_are_not(sql: str, tmp_path: Path) -> None:
    # SQLite files these under OperationalError too; they are bugs, not outages.
    assert not is_unavailable(OperationalError(sql, {}, _sqlite_error(sql, tmp_path)))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        PoolTimeout("QueuePool limit reached"),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        DBAPIError("SELECT 1", {}, _PgError("57P01")),  # admin shutdown
        DBAPIError("SELECT 1", {}, _PgError("08006")),  # connection failure
        DBAPIError("SELECT 1", {}, _PgError("40P01")),  # deadlock
        DBAPIError("SELECT 1", {}, _PgError("53300")),  # too many connections
        DBAPIError(None, None, _PgError("3D000")),  # the database does not exist
        DBAPIError(None, None, _PgError("28P01")),  # password rejected
        DBAPIError(None, None, _PgError("28000")),  # role unknown, or no pg_hba.conf entry
        DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True),
    ],
)
def test_connection_and_transient_server_errors_are_unavailable(error: BaseException) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, _PgError("23505")),  # unique violation
        DBAPIError("INSERT", {}, _PgError("22021")),  # bad byte sequence
        DBAPIError("SELECT", {}, _PgError("42P01")),  # undefined table
        DBAPIError("SELECT", {}, Exception("no sqlstate")),
        ValueError("not a database error"),
    ],
)
def test_bugs_and_bad_data_are_not_unavailable(error: BaseException) -> None:
    assert not is_unavailable(error)
