"""The database as the data commands open it: only once it exists, answers and is migrated."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import StartupFailure

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.database import Database


def sqlite_path(settings: Settings) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return Path(path)


def require_sqlite_directory(settings: Settings) -> None:
    """Said before migrating: the driver's own failure there also leaves a worker thread
    printing a traceback as the process exits."""
    path = sqlite_path(settings)
    if path is not None and not path.parent.is_dir():
        raise StartupFailure(f"cannot migrate the database: no directory {path.parent}")


def require_sqlite_file(settings: Settings) -> None:
    """A SQLite file that does not exist is not created by opening it: an empty file left
    behind would only be one more unmigrated database."""
    path = sqlite_path(settings)
    if path is not None and not path.exists():
        raise StartupFailure(f"no database at {path}: run `inventory migrate` first")


async def open_database(settings: Settings) -> Database:
    """The database, once it is reachable and migrated; else a `StartupFailure`."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.database import Database
    from app.core.errors import DatabaseUnavailable, SchemaNotCurrent
    from app.core.migrations import head_revision

    head = head_revision(settings.database_url)
    database = Database.from_settings(settings, schema_revision=head)
    try:
        await database.ping()
    except SchemaNotCurrent as behind:
        await database.dispose()
        raise StartupFailure(
            f"the database schema is at {behind.current or 'nothing'}, this version needs "
            f"{head}: run `inventory migrate` first"
        ) from None
    except (DatabaseUnavailable, SQLAlchemyError, OSError) as error:
        await database.dispose()
        raise StartupFailure(f"the database cannot answer: {database.reason(error)}") from None
    return database
