"""`inventory export`: every stock level as CSV."""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from app.cli.common import StartupFailure, configured_settings, one_line_failures, plural
from app.cli.database import open_database, require_sqlite_file

if TYPE_CHECKING:
    from app.core.config import Settings


def export_command(
    file: Annotated[
        Path | None, typer.Argument(help="CSV file to write; standard output when omitted.")
    ] = None,
) -> None:
    """Write every stock level as CSV `product_id,quantity`, read page by page."""
    settings = configured_settings()
    with one_line_failures():
        require_sqlite_file(settings)
        with _output(file) as out:
            count = asyncio.run(_export(settings, out))
    typer.echo(f"exported {plural(count, 'stock level')}", err=True)


@contextmanager
def _output(file: Path | None) -> Iterator[TextIO]:
    if file is None:
        yield sys.stdout
        return
    try:
        out = file.open("w", newline="", encoding="utf-8")
    except OSError as error:
        raise StartupFailure(f"cannot write {file}: {error.strerror or error}") from None
    with out:
        yield out


async def _export(settings: Settings, out: TextIO) -> int:
    from app.services import bulk

    database = await open_database(settings)
    # Unix line ends: RFC 4180's CRLF shows as a stray ^M in most tools the file meets.
    writer = csv.writer(out, lineterminator="\n")
    count = 0
    try:
        writer.writerow(["product_id", "quantity"])
        async for page in bulk.export_stock(database):
            writer.writerows(page)
            count += len(page)
    finally:
        await database.dispose()
    return count
