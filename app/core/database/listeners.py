"""Pool listeners: the SQLite settings that make writes safe, the schema check on connect,
and the replacement of connections that can no longer serve."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.errors import SchemaNotCurrent

# Execution options read at BEGIN: the writer's transactions take the write lock at once,
# and single reads open none.
NO_BEGIN = "inventory_no_begin"
_FILE_IDENTITY = "inventory_file_identity"


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


def discard_closed_connections(engine: AsyncEngine) -> None:
    """Replace, at checkout, a pooled connection whose socket the server has closed (it
    restarted, or an outage cut it). asyncpg knows this without a round trip;
    `pool_pre_ping` would ask the server with three (BEGIN, a ping, ROLLBACK) on every
    checkout (docs/performance.md)."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError()


def discard_replaced_files(engine: Engine, path: str) -> None:
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


def require_schema(engine: Engine, revision: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        current = schema_revision(dbapi_connection)
        # The driver opened a transaction for the check; the connection's user did not.
        dbapi_connection.rollback()
        if current != revision:
            # SQLAlchemy closes the connection, so the next checkout connects and checks anew.
            raise SchemaNotCurrent(current=current, head=revision)


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
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


def begin_reads(engine: Engine) -> None:
    """BEGIN for reads of several statements (one snapshot), none for a single statement."""

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(NO_BEGIN, False):
            connection.exec_driver_sql("BEGIN")
