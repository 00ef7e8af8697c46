from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime


class Event(Base):
    """One event of the outbox, written in the transaction of the change it tells of.

    `txid` is the writing transaction's id on PostgreSQL (filled in by the column's server
    default, `pg_current_xact_id()`), 0 on SQLite. The feed is ordered by (txid, id): see
    `app.repositories.events`.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[str] = mapped_column(Text)
