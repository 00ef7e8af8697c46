"""What every command shares: settings and logging, and failures said in one line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.logging import Stream


def configured_settings(log_stream: Stream = "stderr") -> Settings:
    from app.core.config import load_settings
    from app.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings, stream=log_stream)
    return settings


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class StartupFailure(Exception):
    """Why a command cannot start, in one line: it is printed alone, and the exit is 1."""


@contextmanager
def one_line_failures() -> Iterator[None]:
    try:
        yield
    except StartupFailure as failure:
        raise SystemExit(str(failure)) from None


def between(low: int, high: int | None = None) -> Callable[[int], int]:
    """The check of an integer option. Click's own ranges would print `1<=x<=128` after the
    default in the help; the help text says the range in words instead."""

    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            expected = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise typer.BadParameter(f"must be {expected}, not {value}")
        return value

    return check


def length_between(low: int, high: int) -> Callable[[str], str]:
    """The check of a text option's length, in characters."""

    def check(value: str) -> str:
        if not low <= len(value) <= high:
            raise typer.BadParameter(f"must be {low} to {high} characters long")
        return value

    return check
