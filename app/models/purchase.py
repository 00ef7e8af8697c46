from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, ProductId, UTCDateTime


class Purchase(Base):
    """A sale of one or more products, taken from stock all at once."""

    __tablename__ = "purchases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(100))
    # Money is kept as decimal text: exact on every engine, whatever the catalog's precision.
    total: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PurchaseLine(Base):
    __tablename__ = "purchase_lines"

    purchase_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("purchases.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[str] = mapped_column(ProductId, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[str | None] = mapped_column(String(40))
    subtotal: Mapped[str | None] = mapped_column(String(40))
    remaining: Mapped[int] = mapped_column(BigInteger)
