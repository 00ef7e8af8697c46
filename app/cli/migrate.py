"""`inventory migrate`: bring the schema to the latest version."""

from __future__ import annotations

import typer

from app.cli.common import configured_settings, one_line_failures
from app.cli.database import require_sqlite_directory


def migrate() -> None:
    """Bring the database schema to the latest version (alembic upgrade head)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.database import unavailable_reason
    from app.core.migrations import head_revision, upgrade

    settings = configured_settings()
    with one_line_failures():
        require_sqlite_directory(settings)
    try:
        upgrade(settings.database_url)
    except (SQLAlchemyError, OSError) as error:
        raise SystemExit(f"cannot migrate the database: {unavailable_reason(error)}") from None
    typer.echo(f"schema is at {head_revision(settings.database_url)} (head)")
