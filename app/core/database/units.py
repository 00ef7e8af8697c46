"""Units of work, and what runs once their transaction has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection

_AFTER_COMMIT = "inventory_after_commit"

logger = logging.getLogger("app.database")

AfterCommit = Callable[[], None]
T = TypeVar("T")
# A unit of work (or a query): plain data-access code on a connection inside a transaction.
Unit = Callable[[Connection], T]


@contextmanager
def collecting_after_commit(connection: Connection, callbacks: list[AfterCommit]) -> Iterator[None]:
    """While a unit runs on `connection`, the callbacks it registers go to `callbacks`."""
    connection.info[_AFTER_COMMIT] = callbacks
    try:
        yield
    finally:
        connection.info.pop(_AFTER_COMMIT, None)


def run_after_commit(callbacks: list[AfterCommit]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The change is committed and the caller must hear so; a failed report must not
            # turn that into an error.
            logger.exception("after-commit callback failed")


def after_commit(connection: Connection, callback: AfterCommit) -> None:
    """Run `callback` once the transaction of `connection` has committed, never on rollback."""
    try:
        callbacks: list[AfterCommit] = connection.info[_AFTER_COMMIT]
    except KeyError:
        raise RuntimeError("after_commit needs a connection from Database.write()") from None
    callbacks.append(callback)
