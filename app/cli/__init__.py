"""The `inventory` command: serve, migrate, check, export and import.

Commands log to stderr, so stdout carries only what they produce (the CSV of `export`,
the report of `check`). `serve` logs to stdout, like any service.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from app.cli import check, export, importing, migrate, serve

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it rewraps our docstrings' paragraphs to the terminal's width.
    rich_markup_mode=None,
)


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"inventory {version('inventory')}")
        raise typer.Exit()


@cli.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Operate the inventory service."""


cli.command("serve")(serve.serve)
cli.command("migrate")(migrate.migrate)
cli.command("check")(check.check)
cli.command("export")(export.export_command)
cli.command("import")(importing.import_command)


def main() -> None:
    cli()
