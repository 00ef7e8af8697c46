"""What the database is sent, watched from the test's side: every statement any engine of this
process executes while watched, each COMMIT, and a failure injected at one of them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


class InjectedFailure(RuntimeError):
    pass


class Statements:
    """The statements sent so far, `COMMIT` for each commit; `fail_at`: raise instead of
    sending the statement of that number (1-based, counted from `arm`)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail_at: int | None = None

    def arm(self, fail_at: int | None = None) -> None:
        self.sent.clear()
        self.fail_at = fail_at

    def _send(self, statement: str) -> None:
        self.sent.append(statement)
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise InjectedFailure(f"injected before {statement[:60]!r}")

    def _before_cursor_execute(self, *args: Any) -> None:
        self._send(args[2])

    def _commit(self, _connection: Any) -> None:
        self._send("COMMIT")

    def after_first(self, part: str) -> list[str]:
        """What was sent after the first statement that holds `part`."""
        first = next(i for i, sent in enumerate(self.sent) if part in sent)
        return self.sent[first + 1 :]


@contextmanager
def watched() -> Iterator[Statements]:
    statements = Statements()
    listeners = [
        ("before_cursor_execute", statements._before_cursor_execute),
        ("commit", statements._commit),
    ]
    for name, listener in listeners:
        event.listen(Engine, name, listener)
    try:
        yield statements
    finally:
        for name, listener in listeners:
            event.remove(Engine, name, listener)
