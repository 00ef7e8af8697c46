"""The `purchases` and `purchase_lines` tables: receipts, and what each line took."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select, update

from app.models import Purchase, PurchaseLine

# Built once: building them per call cost more than running them (docs/performance.md).
_insert_purchase = insert(Purchase)
_insert_lines = insert(PurchaseLine)
_find = select(*Purchase.__table__.c)
_lines = select(*PurchaseLine.__table__.c).order_by(PurchaseLine.position)


class StoredPurchase(NamedTuple):
    id: str
    status: str
    reference: str | None
    total: str | None
    created_at: datetime
    cancelled_at: datetime | None
    lines: list[dict[str, Any]]


def insert_purchase(
    connection: Connection,
    *,
    purchase_id: str,
    reference: str | None,
    total: str | None,
    actor: str,
    request_id: str,
    now: datetime,
) -> None:
    connection.execute(
        _insert_purchase,
        {
            "id": purchase_id,
            "status": "completed",
            "reference": reference,
            "total": total,
            "actor": actor,
            "request_id": request_id,
            "created_at": now,
        },
    )


def insert_lines(connection: Connection, lines: Sequence[dict[str, Any]]) -> None:
    """Lines as `purchase_lines` rows (purchase_id, product_id, position, quantity, …)."""
    connection.execute(_insert_lines, list(lines))


def mark_cancelled(connection: Connection, purchase_id: str, now: datetime) -> bool:
    """Cancel a completed purchase; False when it is not (unknown, or cancelled already)."""
    result = connection.execute(
        update(Purchase)
        .where(Purchase.id == purchase_id, Purchase.status == "completed")
        .values(status="cancelled", cancelled_at=now)
    )
    return result.rowcount == 1


def find(connection: Connection, purchase_id: str) -> StoredPurchase | None:
    head = connection.execute(_find.where(Purchase.id == purchase_id)).one_or_none()
    if head is None:
        return None
    lines = connection.execute(_lines.where(PurchaseLine.purchase_id == purchase_id))
    return StoredPurchase(
        id=head.id,
        status=head.status,
        reference=head.reference,
        total=head.total,
        created_at=head.created_at,
        cancelled_at=head.cancelled_at,
        lines=[dict(line._mapping) for line in lines],
    )
