from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, ProductId, UTCDateTime

# What a reservation can be as stored. A stored `active` one past its `expires_at` reads as
# `expired`: the background sweeper writes that status later, nobody waits for it.
ReservationStatus = Literal["active", "confirmed", "released", "expired"]


class Reservation(Base):
    """Stock held for a checkout, until it is confirmed into a purchase, released or expires."""

    __tablename__ = "reservations"
    __table_args__ = (
        Index("ix_reservations_status_expires_at", "status", "expires_at"),
        Index("ix_reservations_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When it was confirmed, released or expired: what the purge of old reservations reads.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purchase_id: Mapped[str | None] = mapped_column(String(36))


class ReservationLine(Base):
    """One product of a reservation. `held` is true while its units count in the product's
    `stock_levels.reserved`; `expires_at` repeats the reservation's so that the units of
    expired holds of one product are found through one index."""

    __tablename__ = "reservation_lines"
    __table_args__ = (
        Index(
            "ix_reservation_lines_held_product_id_expires_at", "held", "product_id", "expires_at"
        ),
        Index("ix_reservation_lines_product_id", "product_id"),
    )

    reservation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[str] = mapped_column(ProductId, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[str | None] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    held: Mapped[bool] = mapped_column(Boolean)
