"""What the database is sent, watched from the test's side: every statement any engine of this
process executes while watched, each COMMIT, and a failure injected at one of them. Each is
kept with the connection that sent it, so that what a background task (the delivery loop, a
gauge) sends meanwhile can be told apart from the unit under test."""

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
        self.senders: list[int] = []
        self.fail_at: int | None = None

    def arm(self, fail_at: int | None = None) -> None:
        self.sent.clear()
        self.senders.clear()
        self.fail_at = fail_at

    def _send(self, connection: object, statement: str) -> None:
        self.sent.append(statement)
        self.senders.append(id(connection))
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise InjectedFailure(f"injected before {statement[:60]!r}")

    def _before_cursor_execute(self, *args: Any) -> None:
        self._send(args[0], args[2])

    def _commit(self, connection: Any) -> None:
        self._send(connection, "COMMIT")

    def _first(self, part: str) -> int:
        return next(i for i, sent in enumerate(self.sent) if part in sent)

    def on_connection_of(self, part: str) -> list[str]:
        """What was sent on the connection of the first statement that holds `part`."""
        sender = self.senders[self._first(part)]
        return [sent for sent, by in zip(self.sent, self.senders, strict=True) if by == sender]

    def after_first(self, part: str) -> list[str]:
        """What that connection sent after the first statement that holds `part`."""
        first = self._first(part)
        sender = self.senders[first]
        return [
            sent
            for sent, by in zip(self.sent[first + 1 :], self.senders[first + 1 :], strict=True)
            if by == sender
        ]


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
