"""The `purchases` and `purchase_lines` tables: receipts, and what each line took."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select, text, update

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


# A whole purchase as one statement on PostgreSQL, so that the stock rows it takes from stay
# locked for that statement alone: expired holds of its products let go, the stock rows
# locked in product-id order (two purchases sharing products cannot deadlock), each line
# taken by a conditional decrement, and, only when every line was taken, the purchase, its
# lines, their movements and the events, in the order the unit of work would write them.
# The low, depleted and restocked rules are those of `app.services.events.stock_events` for
# a decrease of the quantity on hand, `available` being what the units still held leave. Event
# texts are `format()` templates the service wrote, filled in here with what only the
# decrement knows (`PurchaseTemplates`).
_buy_postgres = text(
    """
WITH wanted AS (
    SELECT w.product_id, w.quantity, w.unit_price, w.subtotal, w.changed, w.low,
        w.availability, w.position - 1 AS position
    FROM unnest(
        CAST(:product_ids AS text[]), CAST(:quantities AS bigint[]),
        CAST(:unit_prices AS text[]), CAST(:subtotals AS text[]),
        CAST(:changed AS text[]), CAST(:low AS text[]), CAST(:availability AS text[])
    ) WITH ORDINALITY AS w(product_id, quantity, unit_price, subtotal, changed, low,
        availability, position)
), freed_lines AS (
    UPDATE reservation_lines SET held = false
    WHERE held AND product_id = ANY(CAST(:product_ids AS text[]))
        AND expires_at <= CAST(:now AS timestamptz)
    RETURNING product_id, quantity
), freed AS (
    SELECT product_id, sum(quantity)::bigint AS units FROM freed_lines GROUP BY product_id
), locked AS MATERIALIZED (
    -- The expired holds are let go first (an InitPlan, run before any row is locked): every
    -- unit locks reservation lines before stock rows.
    SELECT product_id FROM stock_levels
    WHERE product_id = ANY(CAST(:product_ids AS text[]))
        AND (SELECT count(*) FROM freed_lines) >= 0
    ORDER BY product_id
    FOR UPDATE
), taken AS (
    UPDATE stock_levels AS s
    SET quantity = s.quantity - w.quantity,
        reserved = s.reserved - coalesce(f.units, 0),
        version = s.version + 1,
        updated_at = CAST(:now AS timestamptz)
    FROM wanted AS w LEFT JOIN freed AS f USING (product_id)
    WHERE s.product_id = w.product_id
        AND s.product_id IN (SELECT product_id FROM locked)
        AND s.quantity - w.quantity >= s.reserved - coalesce(f.units, 0)
    RETURNING s.product_id, s.quantity, s.reserved, coalesce(f.units, 0) AS freed,
        s.low_stock_threshold
), whole AS (
    SELECT count(*) = cardinality(CAST(:product_ids AS text[])) AS ok FROM taken
), sold AS (
    SELECT w.*, t.quantity AS remaining, t.reserved, t.freed, t.low_stock_threshold AS threshold
    FROM wanted AS w JOIN taken AS t USING (product_id)
    WHERE (SELECT ok FROM whole)
), purchase_written AS (
    INSERT INTO purchases (id, status, reference, total, actor, request_id, created_at)
    SELECT CAST(:purchase_id AS text), 'completed', CAST(:reference AS text),
        CAST(:total AS text), CAST(:actor AS text), CAST(:request_id AS text),
        CAST(:now AS timestamptz)
    WHERE (SELECT ok FROM whole)
), lines_written AS (
    INSERT INTO purchase_lines
        (purchase_id, product_id, position, quantity, unit_price, subtotal, remaining)
    SELECT CAST(:purchase_id AS text), product_id, position, quantity, unit_price, subtotal,
        remaining
    FROM sold
), moved AS (
    INSERT INTO movements (product_id, kind, delta, quantity_after, reason, purchase_id, actor,
        request_id, created_at)
    SELECT product_id, 'purchase', -quantity, remaining, CAST(:reference AS text),
        CAST(:purchase_id AS text), CAST(:actor AS text), CAST(:request_id AS text),
        CAST(:now AS timestamptz)
    FROM sold ORDER BY position
    RETURNING id, product_id
), told AS (
    SELECT sold.position, 0 AS part, 'stock.changed' AS type,
        format(sold.changed, moved.id, sold.remaining) AS data
    FROM sold JOIN moved USING (product_id)
    UNION ALL
    SELECT position, 1, 'stock.low', format(low, remaining, threshold) FROM sold
    WHERE threshold IS NOT NULL AND remaining + quantity > threshold AND threshold >= remaining
    UNION ALL
    -- The units of expired holds let go count as held before: no event told of their expiry.
    SELECT position, 2,
        CASE WHEN remaining = reserved THEN 'stock.depleted' ELSE 'stock.restocked' END,
        format(availability, remaining, remaining - reserved)
    FROM sold WHERE (remaining = reserved) <> (remaining + quantity = reserved + freed)
    UNION ALL
    SELECT cardinality(CAST(:product_ids AS text[])), 0, 'purchase.completed',
        format(CAST(:receipt AS text),
            VARIADIC (SELECT array_agg(remaining::text ORDER BY position) FROM sold))
    WHERE (SELECT ok FROM whole)
), written AS (
    INSERT INTO events (type, occurred_at, data)
    SELECT type, CAST(:now AS timestamptz), data FROM told ORDER BY position, part
    RETURNING id, type
)
SELECT w.product_id, t.quantity, t.low_stock_threshold, coalesce(f.units, 0) AS freed,
    (SELECT array_agg(type ORDER BY id) FROM written) AS events
FROM wanted AS w LEFT JOIN taken AS t USING (product_id) LEFT JOIN freed AS f USING (product_id)
ORDER BY w.position
"""
)


class PurchaseTemplates(NamedTuple):
    """Event texts of a purchase with `%n$s` where the statement fills in a value: per line
    (in purchase order) `stock.changed` (1: the movement id, 2: the quantity after),
    `stock.low` (1: the quantity after, 2: the threshold) and `stock.depleted` or
    `stock.restocked` (1: the quantity after, 2: what is available after);
    and `purchase.completed` (n: the quantity after of line n)."""

    changed: list[str]
    low: list[str]
    availability: list[str]
    receipt: str


class BoughtLine(NamedTuple):
    """A line of a purchase as the statement left it: the quantity after and the low-stock
    threshold of its product (None when short or absent), the units of expired holds freed."""

    product_id: str
    quantity: int | None
    low_stock_threshold: int | None
    freed: int


class Bought(NamedTuple):
    lines: list[BoughtLine]
    events: list[str]  # the types of the events written, in order


def buy_postgres(
    connection: Connection,
    *,
    purchase_id: str,
    reference: str | None,
    total: str | None,
    lines: Sequence[dict[str, Any]],
    templates: PurchaseTemplates,
    actor: str,
    request_id: str,
    now: datetime,
) -> Bought:
    """Take every line (rows with product_id, quantity, unit_price, subtotal; in purchase
    order) and, only if all were taken, write the purchase: one statement. Lines short of
    stock come back with no quantity, and then nothing but the freeing of expired holds was
    written."""
    rows = connection.execute(
        _buy_postgres,
        {
            "product_ids": [line["product_id"] for line in lines],
            "quantities": [line["quantity"] for line in lines],
            "unit_prices": [line["unit_price"] for line in lines],
            "subtotals": [line["subtotal"] for line in lines],
            "changed": templates.changed,
            "low": templates.low,
            "availability": templates.availability,
            "receipt": templates.receipt,
            "purchase_id": purchase_id,
            "reference": reference,
            "total": total,
            "actor": actor,
            "request_id": request_id,
            "now": now,
        },
    ).all()
    return Bought([BoughtLine(*row[:4]) for row in rows], list(rows[0].events or ()))
