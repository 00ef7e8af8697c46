"""Small typed factories: put things in the database through the service functions."""

from __future__ import annotations

from sqlalchemy import func, select

from app.clients.products import StandaloneCatalog
from app.core.context import Caller
from app.core.database import Database
from app.models import Base, Movement, Purchase, PurchaseLine, StockLevel
from app.schemas.stock import StockLevelOut
from app.services import stock

TEST_CALLER = Caller(actor="factory", request_id="factory-request")


async def make_stock(db: Database, product_id: str = "7", quantity: int = 3) -> StockLevelOut:
    result = await stock.set_quantity(
        db,
        StandaloneCatalog(),
        TEST_CALLER,
        change=stock.NewQuantity(product_id, quantity, "factory"),
    )
    return result.stock


async def quantity_of(db: Database, product_id: str) -> int | None:
    quantity: int | None = await db.read(
        lambda c: c.scalar(select(StockLevel.quantity).where(StockLevel.product_id == product_id))
    )
    return quantity


async def ledger_sum(db: Database, product_id: str) -> int:
    total = await db.read(
        lambda c: c.scalar(
            select(func.coalesce(func.sum(Movement.delta), 0)).where(
                Movement.product_id == product_id
            )
        )
    )
    return int(total or 0)


async def purchase_count(db: Database) -> int:
    return await _row_count(db, Purchase)


async def movement_count(db: Database) -> int:
    return await _row_count(db, Movement)


async def _row_count(db: Database, model: type[Base]) -> int:
    count: int | None = await db.read(lambda c: c.scalar(select(func.count()).select_from(model)))
    return count or 0


async def snapshot(db: Database) -> tuple[list[tuple[object, ...]], int, int]:
    """Every stock level, and how many movements and purchases there are."""
    levels = await db.read(
        lambda c: c.execute(
            select(StockLevel.product_id, StockLevel.quantity, StockLevel.version).order_by(
                StockLevel.product_id
            )
        ).all()
    )
    rows = [tuple(row) for row in levels]
    return rows, await movement_count(db), await purchase_count(db)


async def sold(db: Database, product_id: str) -> int:
    total = await db.read(
        lambda c: c.scalar(
            select(func.coalesce(func.sum(PurchaseLine.quantity), 0))
            .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
            .where(PurchaseLine.product_id == product_id, Purchase.status == "completed")
        )
    )
    return int(total or 0)
