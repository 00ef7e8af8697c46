from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, ProductId, UTCDateTime

MAX_QUANTITY = 1_000_000_000
# The version column is a 32-bit INTEGER on every engine.
MAX_VERSION = 2**31 - 1


class StockLevel(Base):
    """How many units of one product are on hand, and how many of them are held."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint(f"quantity >= 0 AND quantity <= {MAX_QUANTITY}", name="quantity_range"),
        CheckConstraint("reserved >= 0 AND reserved <= quantity", name="reserved_range"),
    )

    product_id: Mapped[str] = mapped_column(ProductId, primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    # Units held by reservations (lines with `held` true), some of which may have expired
    # already: readers and writers discount those (see app/repositories/stock_levels.py).
    reserved: Mapped[int] = mapped_column(BigInteger, server_default="0")
    version: Mapped[int] = mapped_column(Integer)
    # At or below it the product is low on stock (the `stock.low` event); None: no threshold.
    low_stock_threshold: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
