"""Bulk loads and dumps of stock levels: the CSV import and export behind the CLI.

An import is trusted staff input: products are not checked with the products service.
Each row follows the rules of `PUT /inventory/{product_id}` (create or update, version + 1,
one `set` movement with delta = new - old), and a row whose quantity is already stored is
skipped, so importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection

from app.core.context import Caller
from app.core.database import Database
from app.models.base import utcnow
from app.models.stock_level import MAX_QUANTITY
from app.repositories import stock_levels
from app.repositories.movements import NewMovement
from app.schemas.common import ProductId, Reason
from app.services.ledger import record_movements

EXPORT_PAGE_SIZE = 1000
HEADER = ("product_id", "quantity", "reason")

_product_id = TypeAdapter(ProductId)
_reason = TypeAdapter(Reason)
# ASCII digits only: `\d` and int() would also read Arabic-Indic or full-width digits.
_QUANTITY = re.compile(r"[0-9]{1,10}")

logger = structlog.get_logger("app.inventory")


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    product_id: str
    quantity: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


class InvalidImport(Exception):
    """The file has bad rows; nothing was changed."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s)")
        self.errors = errors


@dataclass(slots=True)
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def parse_import(lines: Iterable[str]) -> list[ImportRow]:
    """Every row of a `product_id,quantity[,reason]` CSV (header optional), all checked first.

    Raises `InvalidImport` naming every bad line, so a file is loaded whole or not at all.
    Blank lines are skipped; a product may appear only once.
    """
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    first_line_of: dict[str, int] = {}
    for line, cells in _records(lines, errors):
        if not any(cell.strip() for cell in cells):
            continue
        if not rows and not errors and cells[0].strip().lower() == HEADER[0]:
            if [c.strip().lower() for c in cells] not in (list(HEADER[:2]), list(HEADER)):
                errors.append(RowError(line, "the header must be product_id,quantity[,reason]"))
            continue
        try:
            row = _parse_row(line, cells)
        except ValueError as error:
            errors.append(RowError(line, str(error)))
            continue
        if row.product_id in first_line_of:
            message = (
                f"product {row.product_id!r} is already on line {first_line_of[row.product_id]}"
            )
            errors.append(RowError(line, message))
            continue
        first_line_of[row.product_id] = line
        rows.append(row)
    if errors:
        raise InvalidImport(errors)
    return rows


def _records(lines: Iterable[str], errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it ends on. A record the csv module cannot read (a
    field over its size limit, say) ends the reading there: what follows may be misaligned."""
    reader = csv.reader(lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            errors.append(RowError(reader.line_num, f"unreadable CSV: {error}"))
            return
        yield reader.line_num, cells


def _parse_row(line: int, cells: list[str]) -> ImportRow:
    if len(cells) not in (2, 3):
        raise ValueError(
            f"expected 2 or 3 columns (product_id,quantity[,reason]), got {len(cells)}"
        )
    product_id, quantity = cells[0].strip(), cells[1].strip()
    try:
        _product_id.validate_python(product_id)
    except ValidationError as invalid:
        raise ValueError(f"product id {product_id!r}: {invalid.errors()[0]['msg']}") from None
    if not _QUANTITY.fullmatch(quantity) or int(quantity) > MAX_QUANTITY:
        raise ValueError(f"quantity {quantity!r} is not an integer from 0 to {MAX_QUANTITY}")
    reason = cells[2].strip() if len(cells) == 3 else ""
    if reason:
        try:
            _reason.validate_python(reason)
        except ValidationError as invalid:
            raise ValueError(_reason_problem(reason, invalid)) from None
    return ImportRow(line, product_id, int(quantity), reason or None)


def _reason_problem(reason: str, invalid: ValidationError) -> str:
    # Category Cc is exactly what `PrintableText` refuses: C0, DEL and C1.
    control = next((char for char in reason if unicodedata.category(char) == "Cc"), None)
    if control is None:
        return f"reason: {invalid.errors()[0]['msg']}"
    named = "a tab" if control == "\t" else f"the control character U+{ord(control):04X}"
    return f"reason contains {named}: only printable characters are allowed"


async def import_stock(
    db: Database,
    caller: Caller,
    rows: Sequence[ImportRow],
    *,
    batch_size: int,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Set the stock of every row, at most `batch_size` rows per transaction.

    A batch also ends at each tenth of the rows, so `progress`, told the rows of each batch
    once it is done, can be shown at every tenth. A failure stops the import with the
    earlier batches committed; running the same file again finishes it, since rows already
    at their quantity are skipped. `dry_run` only counts what would change.
    """
    summary = ImportSummary()
    for start, end in _batches(len(rows), batch_size):
        batch = rows[start:end]
        unit = partial(
            _import_batch, caller=caller, batch=batch, summary=summary, write=not dry_run
        )
        await (db.read(unit) if dry_run else db.write(unit))
        if progress is not None:
            progress(len(batch))
    return summary


def log_imported(caller: Caller, *, rows: int, summary: ImportSummary) -> None:
    """The one log line of an import: the ledger movements themselves are events."""
    logger.info(
        "inventory.imported",
        rows=rows,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        actor=caller.actor,
        request_id=caller.request_id,
    )


def _batches(count: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """`(start, end)` of each batch: every `batch_size` rows, and at each tenth of them."""
    tenths = {-(-count * tenth // 10) for tenth in range(1, 10)}
    bounds = sorted({*range(0, count, batch_size), *tenths, count} - {0})
    return zip([0, *bounds], bounds, strict=False)


def _import_batch(
    connection: Connection,
    *,
    caller: Caller,
    batch: Sequence[ImportRow],
    summary: ImportSummary,
    write: bool,
) -> None:
    # Rows are read and written in one transaction; on PostgreSQL the lock keeps a concurrent
    # writer from changing a quantity between our read and our update.
    stored = stock_levels.quantities(
        connection, [row.product_id for row in batch], for_update=write
    )
    created = [row for row in batch if row.product_id not in stored]
    updated = [
        row for row in batch if row.product_id in stored and stored[row.product_id] != row.quantity
    ]
    summary.created += len(created)
    summary.updated += len(updated)
    summary.unchanged += len(batch) - len(created) - len(updated)
    if not write:
        return
    held: dict[str, int] = {}  # the units reservations hold, of the levels updated
    if updated:
        # Like a PUT, an import never takes a quantity below what reservations hold.
        available = stock_levels.available(connection, [row.product_id for row in updated])
        held = {pid: stored[pid] - units for pid, units in available.items()}
        below = [
            RowError(row.line, f"quantity below the {held[row.product_id]} units held")
            for row in updated
            if row.quantity < held.get(row.product_id, 0)
        ]
        if below:
            raise InvalidImport(below)
    now = utcnow()
    if created:
        stock_levels.insert_many(connection, [(r.product_id, r.quantity) for r in created], now)
    if updated:
        stock_levels.set_many(connection, [(r.product_id, r.quantity) for r in updated], now)
    changed = sorted(created + updated, key=lambda row: row.line)
    record_movements(
        connection,
        caller,
        [
            NewMovement(
                product_id=row.product_id,
                kind="set",
                delta=row.quantity - stored.get(row.product_id, 0),
                quantity_after=row.quantity,
                reason=row.reason,
                reserved=held.get(row.product_id, 0),
            )
            for row in changed
        ],
        bulk=True,
    )


async def export_stock(
    db: Database, *, page_size: int = EXPORT_PAGE_SIZE
) -> AsyncIterator[list[tuple[str, int]]]:
    """`(product_id, quantity)` of every stock level in product id order, a page at a time.

    Each page is its own short read, so an export of any size holds no long transaction;
    a stock level changed meanwhile appears once, with the value read for its page.
    """
    after: str | None = None
    while True:
        levels = await db.read_one(
            partial(
                stock_levels.find_many,
                product_ids=(),
                max_quantity=None,
                after=after,
                limit=page_size,
            )
        )
        if not levels:
            return
        yield [(level.product_id, level.quantity) for level in levels]
        after = levels[-1].product_id
