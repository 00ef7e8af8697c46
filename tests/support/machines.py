"""The plumbing of the stateful property tests: a machine that drives the service functions
on an event loop and a database of its own, and how such a machine is run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from app.core.database import Database

T = TypeVar("T")


class DatabaseMachine(RuleBasedStateMachine):
    """Each run has its own event loop and `Database`, and product ids of its own, so runs
    sharing a database do not meet."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = Database(database_url)
        self.prefix = uuid.uuid4().hex[:8]

    def run(self, step: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(step)

    def pid(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def teardown(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()


def run_machine(machine: type[RuleBasedStateMachine], *, examples: int, steps: int) -> None:
    """`examples` runs of at most `steps` steps each; no deadline, the database sets the pace."""
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
