"""`inventory import`: stock levels from a CSV file, every row checked first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from app.cli.common import (
    between,
    configured_settings,
    length_between,
    one_line_failures,
    plural,
)
from app.cli.database import open_database, require_sqlite_file
from app.cli.progress import progress

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.context import Caller
    from app.services import bulk

# More than this many bad rows are summed up rather than listed.
MAX_ERRORS_SHOWN = 100
IMPORT_BATCH_SIZE = 1000


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="CSV: product_id,quantity[,reason]; header optional."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and count changes; write nothing.")
    ] = False,
    actor: Annotated[
        str,
        typer.Option(
            help="Actor named on the ledger movements, 1 to 128 characters.",
            callback=length_between(1, 128),
        ),
    ] = "cli",
    batch_size: Annotated[
        int,
        typer.Option(
            help="Rows per transaction, 1 to 10000 (fewer where a tenth of the rows ends).",
            callback=between(1, 10_000),
        ),
    ] = IMPORT_BATCH_SIZE,
) -> None:
    """Set stock levels from a CSV file, after checking every row.

    Any bad row: each one is reported with its line number and nothing changes. Rows whose
    quantity is already stored are skipped, so a second run changes nothing. Products are
    not checked with the products service: bulk loads are trusted staff input.

    Progress is a bar on a terminal, else a line at every tenth of the rows. The ledger
    movements are not logged one by one (they are events in the feed): an import logs one
    summary line, `inventory.imported`; a dry run logs none.
    """
    from app.core.context import Caller
    from app.services import bulk

    settings = configured_settings()
    rows = _read_rows(file)
    caller = Caller(actor=actor, request_id=uuid.uuid4().hex)
    label = "checking" if dry_run else "importing"
    with one_line_failures():
        require_sqlite_file(settings)
        with progress(len(rows), label) as advance:
            try:
                summary = asyncio.run(
                    _import(
                        settings, caller, rows, dry_run=dry_run, batch_size=batch_size, on=advance
                    )
                )
            except bulk.InvalidImport as invalid:
                # Found while writing (below what reservations hold): earlier batches stand,
                # and a run of the mended file skips them.
                _refuse(file, invalid, "the batches before it were imported; mend and run again")
    # Logged once the bar is closed, so that on a terminal the line starts a line of its own.
    if not dry_run:
        bulk.log_imported(caller, rows=len(rows), summary=summary)
    verb = "would be " if dry_run else ""
    typer.echo(
        f"{summary.created} {verb}created, {summary.updated} {verb}updated, "
        f"{summary.unchanged} unchanged (request id {caller.request_id})"
    )


def _read_rows(file: Path) -> list[bulk.ImportRow]:
    from app.services import bulk

    try:
        with file.open(newline="", encoding="utf-8-sig") as lines:
            return bulk.parse_import(lines)
    except UnicodeDecodeError:
        typer.echo(f"{file}: not UTF-8 text; nothing was imported", err=True)
        raise typer.Exit(1) from None
    except OSError as error:
        typer.echo(
            f"{file}: cannot read it ({error.strerror or error}); nothing was imported", err=True
        )
        raise typer.Exit(1) from None
    except bulk.InvalidImport as invalid:
        _refuse(file, invalid, "nothing was imported")


def _refuse(file: Path, invalid: bulk.InvalidImport, outcome: str) -> NoReturn:
    """Every bad row as `FILE:LINE: problem` (the first ones), then what happened, exit 1."""
    for error in invalid.errors[:MAX_ERRORS_SHOWN]:
        typer.echo(f"{file}:{error.line}: {error.message}", err=True)
    if len(invalid.errors) > MAX_ERRORS_SHOWN:
        hidden = len(invalid.errors) - MAX_ERRORS_SHOWN
        typer.echo(f"… and {plural(hidden, 'more bad row')}", err=True)
    typer.echo(f"{plural(len(invalid.errors), 'bad row')}; {outcome}", err=True)
    raise typer.Exit(1)


async def _import(
    settings: Settings,
    caller: Caller,
    rows: list[bulk.ImportRow],
    *,
    dry_run: bool,
    batch_size: int,
    on: Callable[[int], None],
) -> bulk.ImportSummary:
    from app.services import bulk

    database = await open_database(settings)
    try:
        return await bulk.import_stock(
            database,
            caller,
            rows,
            dry_run=dry_run,
            batch_size=batch_size,
            progress=on,
        )
    finally:
        await database.dispose()
