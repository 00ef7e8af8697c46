"""Alembic, as the service uses it: migrate, and know whether the schema is at head."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alembic import command
from app.core.database import Database

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SchemaNotCurrent(RuntimeError):
    pass


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate synchronously; call from outside any running event loop."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def current_revision(db: Database) -> str | None:
    try:
        async with db.read() as connection:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return None if revision is None else str(revision)
    except DBAPIError as error:
        if "alembic_version" in str(error.orig):
            return None
        raise


async def ensure_schema_current(db: Database, database_url: str) -> None:
    head, current = head_revision(database_url), await current_revision(db)
    if current != head:
        raise SchemaNotCurrent(
            f"database schema is at {current or 'nothing'}, the code needs {head}: "
            "run the migrations (`alembic upgrade head` or `inventory migrate`)"
        )
