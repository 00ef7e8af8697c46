from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, ProductId, UTCDateTime

MovementKind = Literal["set", "adjust", "purchase", "cancel", "delete"]
# What the id column holds on every engine (BIGINT on PostgreSQL, INTEGER on SQLite).
MAX_MOVEMENT_ID = 2**63 - 1


class Movement(Base):
    """One change of one product's stock. Never updated, never deleted."""

    __tablename__ = "movements"
    __table_args__ = (Index("ix_movements_product_id_id", "product_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ProductId)
    kind: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int] = mapped_column(BigInteger)
    quantity_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(200))
    purchase_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
