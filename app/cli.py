"""The `inventory` command: serve, migrate, check, export and import.

Commands log to stderr, so stdout carries only what they produce (the CSV of `export`,
the report of `check`). `serve` logs to stdout, like any service.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer

# The service's modules (SQLAlchemy, pydantic, uvicorn, the app) are imported inside the
# commands that use them, so `inventory --help` answers at once.
if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.context import Caller
    from app.core.database import Database
    from app.core.logging import Stream
    from app.services import bulk

cli = typer.Typer(
    help="Operate the inventory service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it rewraps our docstrings' paragraphs to the terminal's width.
    rich_markup_mode=None,
)

# More than this many bad rows are summed up rather than listed.
MAX_ERRORS_SHOWN = 100


def _settings(log_stream: Stream = "stderr") -> Settings:
    from app.core.config import load_settings
    from app.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings, stream=log_stream)
    return settings


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class StartupFailure(Exception):
    """Why a command cannot start, in one line: it is printed alone, and the exit is 1."""


@contextmanager
def _one_line_failures() -> Iterator[None]:
    try:
        yield
    except StartupFailure as failure:
        raise SystemExit(str(failure)) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8002,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    graceful_timeout: Annotated[
        int, typer.Option(min=1, help="Seconds in-flight requests get to finish on shutdown.")
    ] = 30,
) -> None:
    """Run the HTTP service (granian).

    On SIGTERM or Ctrl-C it stops accepting connections, lets in-flight requests finish
    (up to --graceful-timeout seconds) and then closes the database pool. The server's own
    access log is off: the service writes one `http.request` line per request itself.
    """
    from app.server import build_server

    settings = _settings(log_stream="stdout")  # the supervisor's lines go where its workers' go
    with _one_line_failures():
        _check_port_is_free(host, port)
    server = build_server(
        log_level=settings.log_level,
        host=host,
        port=port,
        workers=workers,
        graceful_timeout=graceful_timeout,
    )
    with _metrics_directory(workers):
        server.serve()


def _check_port_is_free(host: str, port: int) -> None:
    """The server would report a taken port in several log lines; we say it in one line
    before starting. Bound as servers bind (SO_REUSEADDR), so a port in TIME_WAIT is not
    reported."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise StartupFailure(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise StartupFailure(f"cannot listen on {host}:{port}: {error.strerror}") from None


@contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """Multiprocess metrics for several workers: a fresh directory, removed at exit.

    A directory named by the operator in PROMETHEUS_MULTIPROC_DIR is used instead and
    emptied first, as prometheus-client requires between runs.
    """
    from app.core.metrics import MULTIPROCESS_ENV

    named = os.environ.get(MULTIPROCESS_ENV)
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        for stale in Path(named).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="inventory-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(directory, ignore_errors=True)


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest version (alembic upgrade head)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.database import unavailable_reason
    from app.core.migrations import head_revision, upgrade

    settings = _settings()
    with _one_line_failures():
        _require_sqlite_directory(settings)
    try:
        upgrade(settings.database_url)
    except (SQLAlchemyError, OSError) as error:
        raise SystemExit(f"cannot migrate the database: {unavailable_reason(error)}") from None
    typer.echo(f"schema is at {head_revision(settings.database_url)} (head)")


@cli.command()
def check() -> None:
    """Show the settings (secrets hidden) and check the database, its schema and the
    products service. Exits 1 when the service could not start."""
    settings = _settings()
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


@cli.command("export")
def export_command(
    file: Annotated[
        Path | None, typer.Argument(help="CSV file to write; standard output when omitted.")
    ] = None,
) -> None:
    """Write every stock level as CSV `product_id,quantity`, read page by page."""
    settings = _settings()
    with _one_line_failures():
        _require_sqlite_file(settings)
        with _output(file) as out:
            count = asyncio.run(_export(settings, out))
    typer.echo(f"exported {_plural(count, 'stock level')}", err=True)


@contextmanager
def _output(file: Path | None) -> Iterator[TextIO]:
    if file is None:
        yield sys.stdout
        return
    with file.open("w", newline="", encoding="utf-8") as out:
        yield out


def _sqlite_path(settings: Settings) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return Path(path)


def _require_sqlite_directory(settings: Settings) -> None:
    """Said before migrating: the driver's own failure there also leaves a worker thread
    printing a traceback as the process exits."""
    path = _sqlite_path(settings)
    if path is not None and not path.parent.is_dir():
        raise StartupFailure(f"cannot migrate the database: no directory {path.parent}")


def _require_sqlite_file(settings: Settings) -> None:
    """A SQLite file that does not exist is not created by opening it: an empty file left
    behind would only be one more unmigrated database."""
    path = _sqlite_path(settings)
    if path is not None and not path.exists():
        raise StartupFailure(f"no database at {path}: run `inventory migrate` first")


async def _open_database(settings: Settings) -> Database:
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


async def _export(settings: Settings, out: TextIO) -> int:
    from app.services import bulk

    database = await _open_database(settings)
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


@cli.command("import")
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
        str, typer.Option(help="Actor named on the ledger movements.", min=1, max=128)
    ] = "cli",
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, max=10_000, help="Rows per transaction.", show_default="1000"),
    ] = None,
) -> None:
    """Set stock levels from a CSV file, after checking every row.

    Any bad row: each one is reported with its line number and nothing changes. Rows whose
    quantity is already stored are skipped, so a second run changes nothing. Products are
    not checked with the products service: bulk loads are trusted staff input.

    Progress is a bar on a terminal, else a line at every tenth of the rows. The ledger
    movements are not logged one by one (they are events in the feed): the import logs one
    summary line.
    """
    from app.core.context import Caller
    from app.services import bulk

    settings = _settings()
    rows = _read_rows(file)
    caller = Caller(actor=actor, request_id=uuid.uuid4().hex)
    label = "checking" if dry_run else "importing"
    with _one_line_failures():
        _require_sqlite_file(settings)
        with _progress(len(rows), label) as advance:
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
    verb = "would be " if dry_run else ""
    typer.echo(
        f"{summary.created} {verb}created, {summary.updated} {verb}updated, "
        f"{summary.unchanged} unchanged (request id {caller.request_id})"
    )


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A bar on a terminal; elsewhere (a pipe, a log file) a line at each tenth of the rows."""
    if sys.stderr.isatty():
        with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    done = 0
    reported = 0

    def advance(count: int) -> None:
        nonlocal done, reported
        done += count
        tenth = done * 10 // max(total, 1)
        if tenth > reported or done == total:
            reported = tenth
            typer.echo(f"{label}: {done}/{total} rows ({done * 100 // max(total, 1)}%)", err=True)

    yield advance


def _read_rows(file: Path) -> list[bulk.ImportRow]:
    from app.services import bulk

    try:
        with file.open(newline="", encoding="utf-8-sig") as lines:
            return bulk.parse_import(lines)
    except UnicodeDecodeError:
        typer.echo(f"{file}: not UTF-8 text; nothing was imported", err=True)
        raise typer.Exit(1) from None
    except bulk.InvalidImport as invalid:
        _refuse(file, invalid, "nothing was imported")


def _refuse(file: Path, invalid: bulk.InvalidImport, outcome: str) -> NoReturn:
    """Every bad row as `FILE:LINE: problem` (the first ones), then what happened, exit 1."""
    for error in invalid.errors[:MAX_ERRORS_SHOWN]:
        typer.echo(f"{file}:{error.line}: {error.message}", err=True)
    if len(invalid.errors) > MAX_ERRORS_SHOWN:
        hidden = len(invalid.errors) - MAX_ERRORS_SHOWN
        typer.echo(f"… and {_plural(hidden, 'more bad row')}", err=True)
    typer.echo(f"{_plural(len(invalid.errors), 'bad row')}; {outcome}", err=True)
    raise typer.Exit(1)


async def _import(
    settings: Settings,
    caller: Caller,
    rows: list[bulk.ImportRow],
    *,
    dry_run: bool,
    batch_size: int | None,
    on: Callable[[int], None],
) -> bulk.ImportSummary:
    from app.services import bulk

    database = await _open_database(settings)
    try:
        return await bulk.import_stock(
            database,
            caller,
            rows,
            dry_run=dry_run,
            batch_size=batch_size or bulk.IMPORT_BATCH_SIZE,
            progress=on,
        )
    finally:
        await database.dispose()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
