"""`inventory.changed` lines and movement counts: after the commit, never for a rollback."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Connection

from app.core.database import Database, after_commit
from app.core.logging import configure_logging
from app.services.ledger import record_movement
from tests.support.factories import TEST_CALLER, make_stock
from tests.support.logs import events, json_lines
from tests.support.service import make_settings


@pytest.fixture(autouse=True)
def _json_logs(database_url: str) -> None:
    configure_logging(make_settings(database_url, log_format="json"))


def _movements_counted(kind: str) -> float:
    return REGISTRY.get_sample_value("inventory_movements_total", {"kind": kind}) or 0.0


async def test_change_is_announced_once_after_commit(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    json_lines(capsys)
    before_commit: list[dict[str, Any]] = []

    def unit(connection: Connection) -> None:
        record_movement(
            connection,
            TEST_CALLER,
            product_id="9",
            kind="cancel",
            delta=4,
            quantity_after=4,
            purchase_id="p-1",
        )
        before_commit.extend(events(json_lines(capsys), "inventory.changed"))

    await db.write(unit)
    assert before_commit == []

    [line] = events(json_lines(capsys), "inventory.changed")
    expected = {
        "product_id": "9",
        "kind": "cancel",
        "delta": 4,
        "quantity_after": 4,
        "purchase_id": "p-1",
        "request_id": TEST_CALLER.request_id,
    }
    assert {name: line.get(name) for name in expected} == expected


async def test_rolled_back_change_announces_and_counts_nothing(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    def record_then_fail(connection: Connection) -> None:
        record_movement(
            connection,
            TEST_CALLER,
            product_id="9",
            kind="purchase",
            delta=-1,
            quantity_after=0,
        )
        raise RuntimeError("abort")

    counted = _movements_counted("purchase")
    json_lines(capsys)
    with pytest.raises(RuntimeError, match="abort"):
        await db.write(record_then_fail)

    assert events(json_lines(capsys), "inventory.changed") == []
    assert _movements_counted("purchase") == counted


async def test_committed_change_counts_its_kind(db: Database) -> None:
    counted = _movements_counted("set")
    await make_stock(db, "7", 3)
    assert _movements_counted("set") == counted + 1


async def test_failing_after_commit_callback_does_not_fail_the_commit(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise ValueError("report failed")

    await db.write(lambda connection: after_commit(connection, fail))

    [line] = [
        line for line in json_lines(capsys) if line["event"] == "after-commit callback failed"
    ]
    assert "ValueError: report failed" in line["exception"]


async def test_after_commit_outside_a_write_transaction_is_refused(db: Database) -> None:
    with pytest.raises(RuntimeError, match=r"Database\.write"):
        await db.read(lambda connection: after_commit(connection, lambda: None))
