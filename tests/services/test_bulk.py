from __future__ import annotations

import io
from datetime import timedelta
from itertools import accumulate

import pytest
from sqlalchemy import select

from app.clients.products import StandaloneCatalog
from app.core.database import Database
from app.models import Movement, StockLevel
from app.schemas.reservations import ReservationIn
from app.services import bulk
from app.services import reservations as reservations_service
from tests.support.factories import (
    TEST_CALLER,
    ledger_sum,
    make_stock,
    movement_count,
    quantity_of,
    snapshot,
)


def _parse(text: str) -> list[bulk.ImportRow]:
    return bulk.parse_import(io.StringIO(text))


def _errors(text: str) -> list[tuple[int, str]]:
    with pytest.raises(bulk.InvalidImport) as invalid:
        _parse(text)
    return [(error.line, error.message) for error in invalid.value.errors]


def test_parse_reads_rows_with_or_without_header() -> None:
    with_header = _parse("product_id,quantity,reason\nA-1, 5 ,delivery\n\nB.2,0,\n")
    without = _parse("A-1,5,delivery\nB.2,0\n")
    assert with_header == [
        bulk.ImportRow(2, "A-1", 5, "delivery"),
        bulk.ImportRow(4, "B.2", 0, None),
    ]
    assert [(r.product_id, r.quantity, r.reason) for r in without] == [
        ("A-1", 5, "delivery"),
        ("B.2", 0, None),
    ]


def test_parse_names_every_bad_line() -> None:
    text = "\n".join(
        [
            "product_id,quantity",
            "ok-1,5",
            "-bad,1",
            "ok-2,-1",
            "ok-3,1000000001",
            "ok-4,2.5",
            "ok-5,1,reason,extra",
            "ok-6,1," + "x" * 201,
            "ok-7,1,tab\there",
            "ok-1,7",
        ]
    )
    errors = _errors(text)
    assert [line for line, _ in errors] == [3, 4, 5, 6, 7, 8, 9, 10]
    messages = dict(errors)
    assert "product id" in messages[3]
    assert "quantity" in messages[5]
    assert "columns" in messages[7]
    assert "reason" in messages[8]
    assert "already on line 2" in messages[10]


def test_parse_refuses_a_wrong_header() -> None:
    assert _errors("product_id,qty\n1,2\n") == [
        (1, "the header must be product_id,quantity[,reason]")
    ]


async def test_import_with_bad_rows_changes_nothing(db: Database) -> None:
    await make_stock(db, "kept", 3)
    with pytest.raises(bulk.InvalidImport):
        _parse("kept,9\nnew,x\n")
    assert await quantity_of(db, "kept") == 3
    assert await quantity_of(db, "new") is None


async def test_import_creates_updates_and_skips_like_put(db: Database) -> None:
    await make_stock(db, "old", 10)
    await make_stock(db, "same", 4)
    rows = _parse("old,7,recount\nsame,4\nnew,5\n")

    summary = await bulk.import_stock(db, TEST_CALLER, rows, batch_size=2)

    assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 1)
    assert await quantity_of(db, "old") == 7
    assert await quantity_of(db, "new") == 5
    for product_id, quantity in (("old", 7), ("same", 4), ("new", 5)):
        assert await ledger_sum(db, product_id) == quantity
    old = await db.read(
        lambda c: c.execute(
            select(Movement.kind, Movement.delta, Movement.reason, Movement.actor)
            .where(Movement.product_id == "old")
            .order_by(Movement.id.desc())
        ).first()
    )
    assert tuple(old or ()) == ("set", -3, "recount", TEST_CALLER.actor)


async def test_import_bumps_the_version_of_updated_rows(db: Database) -> None:
    await make_stock(db, "v", 1)
    await bulk.import_stock(db, TEST_CALLER, _parse("v,2\nw,5\n"), batch_size=100)
    versions = dict(
        await db.read(lambda c: c.execute(select(StockLevel.product_id, StockLevel.version)).all())
    )
    assert versions == {"v": 2, "w": 1}


async def test_importing_twice_changes_nothing_the_second_time(db: Database) -> None:
    rows = _parse("a,1\nb,2\nc,3\n")
    await bulk.import_stock(db, TEST_CALLER, rows, batch_size=100)
    movements = await movement_count(db)

    again = await bulk.import_stock(db, TEST_CALLER, rows, batch_size=100)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert await movement_count(db) == movements


async def test_dry_run_counts_and_writes_nothing(db: Database) -> None:
    await make_stock(db, "a", 1)
    summary = await bulk.import_stock(
        db, TEST_CALLER, _parse("a,2\nb,3\n"), batch_size=100, dry_run=True
    )
    assert (summary.created, summary.updated) == (1, 1)
    assert await quantity_of(db, "a") == 1
    assert await quantity_of(db, "b") is None


async def test_export_pages_through_every_stock_level_in_order(db: Database) -> None:
    rows = _parse("".join(f"p{i:02d},{i}\n" for i in range(7)))
    await bulk.import_stock(db, TEST_CALLER, rows, batch_size=100)

    pages = [page async for page in bulk.export_stock(db, page_size=3)]

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [item for page in pages for item in page] == [(f"p{i:02d}", i) for i in range(7)]


async def test_batches_end_at_each_tenth_so_progress_is_told_there(db: Database) -> None:
    seen: list[int] = []
    rows = _parse("".join(f"p{i},{i}\n" for i in range(25)))
    await bulk.import_stock(db, TEST_CALLER, rows, batch_size=10, progress=seen.append)
    assert list(accumulate(seen)) == [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]


async def test_batches_are_never_larger_than_the_batch_size(db: Database) -> None:
    seen: list[int] = []
    rows = _parse("".join(f"p{i},{i}\n" for i in range(40)))
    await bulk.import_stock(db, TEST_CALLER, rows, batch_size=3, progress=seen.append)
    assert max(seen) == 3
    assert {4 * tenth for tenth in range(1, 11)} <= set(accumulate(seen))
    assert sum(seen) == 40


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("broken\tglass", "reason contains a tab: only printable characters are allowed"),
        (
            "esc\x9b[2J",
            "reason contains the control character U+009B: only printable characters are allowed",
        ),
        ("x" * 201, "reason: String should have at most 200 characters"),
    ],
)
def test_a_bad_reason_is_told_for_what_it_is(reason: str, message: str) -> None:
    assert _errors(f'p,1,"{reason}"\n') == [(1, message)]


@pytest.mark.parametrize("quantity", ["٣", "１２", "۴", "३", "1٢", "²", "٣٣٣٣٣٣٣٣٣٣٣"])
def test_quantities_are_ascii_digits_only(quantity: str) -> None:
    assert [line for line, _ in _errors(f"p,{quantity}\n")] == [1]


def test_a_field_the_csv_module_cannot_read_is_a_line_not_a_traceback() -> None:
    errors = _errors("ok,1\n" + "big,1," + "x" * (128 * 1024 + 1) + "\nlater,2\n")
    assert errors == [(2, "unreadable CSV: field larger than field limit (131072)")]


async def test_import_never_takes_a_quantity_below_what_reservations_hold(db: Database) -> None:
    await make_stock(db, "held", 5)
    await reservations_service.hold(
        db,
        StandaloneCatalog(),
        TEST_CALLER,
        order=ReservationIn.model_validate({"items": [{"product_id": "held", "quantity": 3}]}),
        ttl=timedelta(minutes=5),
    )
    before = await snapshot(db)

    with pytest.raises(bulk.InvalidImport) as refused:
        await bulk.import_stock(db, TEST_CALLER, _parse("held,2\n"), batch_size=100)

    assert [(e.line, e.message) for e in refused.value.errors] == [
        (1, "quantity below the 3 units held")
    ]
    assert await snapshot(db) == before
