"""Benchmark databases: made by the service's migrations, seeded with direct inserts whose
ledger agrees with the stock, checked after every purchase scenario, dropped at the end."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import Connection, insert, text
from sqlalchemy.engine import make_url

from app.core import migrations
from app.core.database import Database
from app.models import Movement, StockLevel
from app.models.base import utcnow

PRODUCTS = 10_000
HOT = "hot"
HOT_STOCK = 1_000_000_000  # the most a stock level may hold: single units never run out
SPREAD_STOCK = 1_000_000


def product_id(n: int) -> str:
    return f"p{n}"


@contextmanager
def sqlite_databases(directory: Path, count: int) -> Iterator[list[str]]:
    """`count` migrated SQLite files (copies of one migrated template)."""
    template = directory / "template.db"
    migrations.upgrade(f"sqlite:///{template}")
    paths = []
    for i in range(count):
        path = directory / f"bench-{i}.db"
        shutil.copyfile(template, path)
        paths.append(f"sqlite:///{path}")
    yield paths


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def postgres_databases(admin_url: str, count: int) -> Iterator[list[str]]:
    """`count` migrated PostgreSQL databases on the admin URL's server, dropped afterwards."""
    names = [f"inventory_bench_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    urls = []
    try:
        for name in names:
            asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            migrations.upgrade(url)
            urls.append(url)
        yield urls
    finally:
        for name in names:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def seed(database_url: str) -> None:
    """The hot product and 10,000 others, each with the `set` movement that explains its stock."""
    now = utcnow()
    stock = [(HOT, HOT_STOCK)] + [(product_id(n), SPREAD_STOCK) for n in range(1, PRODUCTS + 1)]
    db = Database(database_url)
    try:

        def unit(connection: Connection) -> None:
            connection.execute(
                insert(StockLevel),
                [
                    {"product_id": pid, "quantity": qty, "version": 1}
                    | {"created_at": now, "updated_at": now}
                    for pid, qty in stock
                ],
            )
            connection.execute(
                insert(Movement),
                [
                    {"product_id": pid, "kind": "set", "delta": qty, "quantity_after": qty}
                    | {"reason": "bench seed", "actor": "bench", "request_id": "seed"}
                    | {"created_at": now}
                    for pid, qty in stock
                ],
            )

        await db.write(unit)
    finally:
        await db.dispose()


# One statement, so that on PostgreSQL every figure comes from the same snapshot.
_STATE = text(
    """
    SELECT
      (SELECT COALESCE(SUM(quantity), 0) FROM stock_levels) AS stock,
      (SELECT COUNT(*) FROM stock_levels WHERE quantity < 0) AS negative,
      (SELECT COALESCE(MAX(id), 0) FROM movements) AS last_movement,
      (SELECT COALESCE(-SUM(delta), 0) FROM movements
        WHERE kind = 'purchase' AND id > :since) AS sold,
      (SELECT COUNT(DISTINCT purchase_id) FROM movements
        WHERE kind = 'purchase' AND id > :since) AS purchases,
      (SELECT COALESCE(SUM(quantity), 0) FROM purchase_lines) AS sold_by_lines,
      (SELECT COALESCE(-SUM(delta), 0) FROM movements WHERE kind = 'purchase') AS sold_by_ledger,
      (SELECT COUNT(*) FROM stock_levels s WHERE s.quantity <> (
        SELECT COALESCE(SUM(m.delta), 0) FROM movements m WHERE m.product_id = s.product_id
      )) AS ledger_mismatches
    """
)


@dataclass(frozen=True, slots=True)
class State:
    stock: int
    negative: int
    last_movement: int
    sold: int
    purchases: int
    sold_by_lines: int
    sold_by_ledger: int
    ledger_mismatches: int


async def state(database_url: str, *, since: int = 0) -> State:
    db = Database(database_url)
    try:
        row = await db.read(lambda c: c.execute(_STATE, {"since": since}).one())
    finally:
        await db.dispose()
    return State(*(int(value) for value in row))


@dataclass(frozen=True, slots=True)
class Invariant:
    ok: bool
    initial: int
    stock: int
    sold: int
    purchases: int
    negative: int
    detail: str

    def cell(self) -> str:
        verdict = "ok" if self.ok else "**FAILED**"
        return (
            f"{verdict}: {self.stock:,} + {self.sold:,} = {self.stock + self.sold:,} "
            f"(initial {self.initial:,}), {self.negative} negative"
            + (f"; {self.detail}" if self.detail else "")
        )


def invariant(before: State, after: State) -> Invariant:
    """stock + sold == initial stock, nothing negative, and the ledger explains every level."""
    problems = []
    if after.stock + after.sold != before.stock:
        problems.append("stock + sold differs from the initial stock")
    if after.sold_by_lines != after.sold_by_ledger:
        problems.append(f"lines say {after.sold_by_lines} sold, ledger {after.sold_by_ledger}")
    if after.ledger_mismatches:
        problems.append(f"{after.ledger_mismatches} levels differ from their ledger")
    return Invariant(
        ok=not problems and after.negative == 0,
        initial=before.stock,
        stock=after.stock,
        sold=after.sold,
        purchases=after.purchases,
        negative=after.negative,
        detail="; ".join(problems),
    )


async def event_count(database_url: str) -> int:
    """How many events the outbox holds."""
    db = Database(database_url)
    try:
        count = await db.read(lambda c: c.execute(text("SELECT COUNT(*) FROM events")).scalar_one())
    finally:
        await db.dispose()
    return int(count)
