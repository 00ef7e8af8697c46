"""What every command shares: settings and logging, and failures said in one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

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
