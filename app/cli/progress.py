"""Progress of a long command on standard error."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
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
