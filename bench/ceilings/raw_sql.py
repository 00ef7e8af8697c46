"""Ceiling (b): FastAPI over the bare driver (asyncpg, or sqlite3 on the event loop), no ORM,
no ledger, no validation. A one-line purchase is the single conditional UPDATE.

`RAW_DATABASE_URL` names the database: `sqlite:///path` or `postgresql://…`. The schema is the
service's own (migrated), so the statements touch the same table and indexes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response

_URL = os.environ.get("RAW_DATABASE_URL", "sqlite:///./raw.db")
_POOL_SIZE = 20  # the service's default: two pools of DATABASE_POOL_SIZE 10

_SELECT = "SELECT product_id, quantity, version FROM stock_levels WHERE product_id = {p1}"
_TAKE = (
    "UPDATE stock_levels SET quantity = quantity - {p1}, version = version + 1, "
    "updated_at = {p2} WHERE product_id = {p3} AND quantity >= {p1} RETURNING quantity"
)
_SET = (
    "UPDATE stock_levels SET quantity = {p1}, version = version + 1, updated_at = {p2} "
    "WHERE product_id = {p3} RETURNING quantity, version"
)


# A hold and its confirmation, each one transaction, as lean as SQL allows.
_HOLD = (
    "UPDATE stock_levels SET reserved = reserved + {p1}, version = version + 1, "
    "updated_at = {p2} WHERE product_id = {p3} AND quantity - reserved >= {p1} RETURNING reserved"
)
_INSERT_RESERVATION = (
    "INSERT INTO reservations (id, status, actor, request_id, created_at, expires_at) "
    "VALUES ({p1}, 'active', 'bench', 'bench', {p2}, {p2})"
)
_INSERT_LINE = (
    "INSERT INTO reservation_lines (reservation_id, product_id, position, quantity, expires_at, "
    "held) VALUES ({p1}, {p2}, 0, {p3}, {p4}, TRUE)"
)
_CONFIRM = (
    "UPDATE reservations SET status = 'confirmed', ended_at = {p2} "
    "WHERE id = {p1} AND status = 'active' RETURNING id"
)
_LET_GO = (
    "UPDATE reservation_lines SET held = FALSE WHERE reservation_id = {p1} AND held "
    "RETURNING product_id, quantity"
)
_TAKE_HELD = (
    "UPDATE stock_levels SET quantity = quantity - {p1}, reserved = reserved - {p1}, "
    "version = version + 1, updated_at = {p2} WHERE product_id = {p3} RETURNING quantity"
)


class Store:
    async def get(self, product_id: str) -> tuple[Any, ...] | None:
        raise NotImplementedError

    async def set(self, product_id: str, quantity: int) -> tuple[Any, ...] | None:
        raise NotImplementedError

    async def take(self, lines: list[tuple[str, int]]) -> list[int] | None:
        raise NotImplementedError

    async def hold(self, product_id: str, quantity: int) -> str | None:
        raise NotImplementedError

    async def confirm(self, reservation_id: str) -> int | None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresStore(Store):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        numbered = {"p1": "$1", "p2": "$2", "p3": "$3"}
        self.select = _SELECT.format(**numbered)
        self.take_sql = _TAKE.format(**numbered)
        self.set_sql = _SET.format(**numbered)

    async def get(self, product_id: str) -> tuple[Any, ...] | None:
        row = await self.pool.fetchrow(self.select, product_id)
        return None if row is None else tuple(row)

    async def set(self, product_id: str, quantity: int) -> tuple[Any, ...] | None:
        row = await self.pool.fetchrow(self.set_sql, quantity, datetime.now(UTC), product_id)
        return None if row is None else tuple(row)

    async def take(self, lines: list[tuple[str, int]]) -> list[int] | None:
        now = datetime.now(UTC)
        if len(lines) == 1:
            product_id, quantity = lines[0]
            left = await self.pool.fetchval(self.take_sql, quantity, now, product_id)
            return None if left is None else [left]
        async with self.pool.acquire() as connection, connection.transaction():
            remaining = []
            for product_id, quantity in sorted(lines):
                left = await connection.fetchval(self.take_sql, quantity, now, product_id)
                if left is None:
                    raise _Short
                remaining.append(left)
            return remaining

    async def hold(self, product_id: str, quantity: int) -> str | None:
        now, reservation_id = datetime.now(UTC), str(uuid.uuid4())
        async with self.pool.acquire() as connection, connection.transaction():
            if (
                await connection.fetchval(_HOLD.format(**_NUMBERED), quantity, now, product_id)
                is None
            ):
                return None
            await connection.execute(_INSERT_RESERVATION.format(**_NUMBERED), reservation_id, now)
            await connection.execute(
                _INSERT_LINE.format(**_NUMBERED), reservation_id, product_id, quantity, now
            )
        return reservation_id

    async def confirm(self, reservation_id: str) -> int | None:
        now = datetime.now(UTC)
        async with self.pool.acquire() as connection, connection.transaction():
            if await connection.fetchval(_CONFIRM.format(**_NUMBERED), reservation_id, now) is None:
                return None
            line = await connection.fetchrow(_LET_GO.format(**_NUMBERED), reservation_id)
            left: int = await connection.fetchval(
                _TAKE_HELD.format(**_NUMBERED), line["quantity"], now, line["product_id"]
            )
        return left

    async def close(self) -> None:
        await self.pool.close()


class SqliteStore(Store):
    """One connection, used on the event loop: no thread hand-off, the fastest Python can ask."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # The service's pragmas, so both pay the same price for durability.
        for pragma in ("journal_mode=WAL", "busy_timeout=5000", "synchronous=FULL"):
            self.db.execute(f"PRAGMA {pragma}")
        named = {"p1": "?1", "p2": "?2", "p3": "?3"}
        self.select = _SELECT.format(**named)
        self.take_sql = _TAKE.format(**named)
        self.set_sql = _SET.format(**named)

    async def get(self, product_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(self.select, (product_id,)).fetchone()
        return row

    async def set(self, product_id: str, quantity: int) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(
            self.set_sql, (quantity, _now_text(), product_id)
        ).fetchone()
        return row

    async def take(self, lines: list[tuple[str, int]]) -> list[int] | None:
        now = _now_text()
        if len(lines) == 1:
            product_id, quantity = lines[0]
            row = self.db.execute(self.take_sql, (quantity, now, product_id)).fetchone()
            return None if row is None else [row[0]]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            remaining = []
            for product_id, quantity in sorted(lines):
                row = self.db.execute(self.take_sql, (quantity, now, product_id)).fetchone()
                if row is None:
                    raise _Short
                remaining.append(row[0])
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return remaining

    async def hold(self, product_id: str, quantity: int) -> str | None:
        now, reservation_id = _now_text(), str(uuid.uuid4())
        with self._transaction():
            if (
                self.db.execute(_HOLD.format(**_NAMED), (quantity, now, product_id)).fetchone()
                is None
            ):
                return None
            self.db.execute(_INSERT_RESERVATION.format(**_NAMED), (reservation_id, now))
            self.db.execute(
                _INSERT_LINE.format(**_NAMED), (reservation_id, product_id, quantity, now)
            )
        return reservation_id

    async def confirm(self, reservation_id: str) -> int | None:
        now = _now_text()
        with self._transaction():
            if self.db.execute(_CONFIRM.format(**_NAMED), (reservation_id, now)).fetchone() is None:
                return None
            product_id, quantity = self.db.execute(
                _LET_GO.format(**_NAMED), (reservation_id,)
            ).fetchone()
            row = self.db.execute(
                _TAKE_HELD.format(**_NAMED), (quantity, now, product_id)
            ).fetchone()
        return int(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    async def close(self) -> None:
        self.db.close()


_NUMBERED = {"p1": "$1", "p2": "$2", "p3": "$3", "p4": "$4"}
_NAMED = {"p1": "?1", "p2": "?2", "p3": "?3", "p4": "?4"}


class _Short(Exception):
    pass


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def _open_store() -> Store:
    if _URL.startswith("sqlite:///"):
        return SqliteStore(_URL.removeprefix("sqlite:///"))
    dsn = _URL.replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=_POOL_SIZE, max_size=_POOL_SIZE)
    return PostgresStore(pool)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.store = await _open_store()
    yield
    await app.state.store.close()


app = FastAPI(lifespan=lifespan)


def _json(status: int, body: object) -> Response:
    return Response(json.dumps(body), status, media_type="application/json")


@app.get("/inventory/{product_id}")
async def get_stock_level(product_id: str, request: Request) -> Response:
    row = await request.app.state.store.get(product_id)
    if row is None:
        return _json(404, {"detail": "not found"})
    return _json(200, {"product_id": row[0], "quantity": row[1], "version": row[2]})


@app.put("/inventory/{product_id}")
async def set_stock_level(product_id: str, request: Request) -> Response:
    body = await request.json()
    row = await request.app.state.store.set(product_id, int(body["quantity"]))
    if row is None:
        return _json(404, {"detail": "not found"})
    return _json(200, {"product_id": product_id, "quantity": row[0], "version": row[1]})


@app.post("/inventory/purchase")
async def purchase(request: Request) -> Response:
    body = await request.json()
    lines = [(str(item["product_id"]), int(item["quantity"])) for item in body["items"]]
    try:
        remaining = await request.app.state.store.take(lines)
    except _Short:
        remaining = None
    if remaining is None:
        return _json(409, {"detail": "insufficient stock"})
    items = [
        {"product_id": pid, "quantity": qty, "remaining": left}
        for (pid, qty), left in zip(sorted(lines), remaining, strict=True)
    ]
    return _json(201, {"status": "completed", "items": items})


@app.post("/reservations")
async def reserve(request: Request) -> Response:
    body = await request.json()
    item = body["items"][0]
    reservation_id = await request.app.state.store.hold(
        str(item["product_id"]), int(item["quantity"])
    )
    if reservation_id is None:
        return _json(409, {"detail": "insufficient stock"})
    return _json(201, {"id": reservation_id, "status": "active"})


@app.post("/reservations/{reservation_id}/confirm")
async def confirm(reservation_id: str, request: Request) -> Response:
    left = await request.app.state.store.confirm(reservation_id)
    if left is None:
        return _json(409, {"detail": "reservation not active"})
    return _json(201, {"status": "completed", "remaining": left})
