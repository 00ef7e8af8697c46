"""`inventory check`: the settings, and whether the service could start with them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from app.cli.common import configured_settings

if TYPE_CHECKING:
    from app.core.config import Settings


def check() -> None:
    """Show the settings (secrets hidden) and check the database, its schema and the
    products service. Exits 1 when the service could not start."""
    settings = configured_settings()
    typer.echo("settings:")
    for name, shown in settings_summary(settings):
        typer.echo(f"  {name.upper()} = {shown}")
    results = asyncio.run(_check(settings))
    for name, outcome in results.items():
        typer.echo(f"{name}: {outcome}")
    if results["database"] != "ok" or not results["schema"].startswith("at head"):
        raise typer.Exit(1)


def settings_summary(settings: Settings) -> list[tuple[str, str]]:
    """Every setting with secrets hidden (key names shown, values never)."""
    from pydantic import SecretStr
    from sqlalchemy.engine import make_url

    from app.clients.products import masked_url
    from app.core.logging import MASK

    summary: list[tuple[str, str]] = []
    for name, value in settings:
        if isinstance(value, SecretStr):
            shown = MASK
        elif name == "api_keys":
            shown = ", ".join(f"{actor}:{MASK}" for actor, _ in value) or "(unset)"
        elif name == "database_url":
            shown = make_url(value).render_as_string(hide_password=True)
        elif name == "products_service_url" and value is not None:
            shown = masked_url(value)
        else:
            shown = "(unset)" if value is None else str(value)
        summary.append((name, shown))
    return summary


async def _check(settings: Settings) -> dict[str, str]:
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.database import Database
    from app.core.errors import DatabaseUnavailable, SchemaNotCurrent
    from app.core.migrations import head_revision

    head = head_revision(settings.database_url)
    database = Database.from_settings(settings, schema_revision=head)
    try:
        await database.ping()
    except SchemaNotCurrent as behind:
        schema = f"at {behind.current or 'nothing'}, head is {head}: run `inventory migrate`"
        return {"database": "ok", "schema": schema, "products": "not checked"}
    except (DatabaseUnavailable, SQLAlchemyError, OSError) as error:
        return {"database": f"unavailable ({database.reason(error)})", "schema": "unknown"}
    finally:
        await database.dispose()
    return {"database": "ok", "schema": f"at head ({head})", "products": await _probe(settings)}


async def _probe(settings: Settings) -> str:
    """The products check `/ready` makes, through a catalog built as the app builds it."""
    from app.clients.products import build_catalog, build_http_client

    http_client = build_http_client(settings) if settings.products_service_url else None
    try:
        return await build_catalog(settings, http_client).probe()
    finally:
        if http_client is not None:
            await http_client.aclose()
