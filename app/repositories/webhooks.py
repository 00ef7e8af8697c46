"""Webhook endpoints, their deliveries (one per event per endpoint) and the attempts log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

_endpoint_columns = [
    c
    for c in WebhookEndpoint.__table__.c
    if c.name not in ("secret", "cursor_txid", "cursor_id", "cursor_snapshot")
]
_attempt_columns = list(WebhookAttempt.__table__.c)


class Endpoint(NamedTuple):
    """An endpoint as the delivery loop needs it."""

    id: str
    url: str
    events: str  # JSON
    secret: str
    cursor_txid: int
    cursor_id: int
    cursor_snapshot: str | None


class Claimed(NamedTuple):
    id: int
    endpoint_id: str
    event_id: str
    payload: str
    attempts: int
    created_at: datetime


def insert_endpoint(connection: Connection, values: dict[str, Any]) -> None:
    connection.execute(insert(WebhookEndpoint), values)


def find_endpoint(connection: Connection, endpoint_id: str) -> dict[str, Any] | None:
    row = connection.execute(
        select(*_endpoint_columns).where(WebhookEndpoint.id == endpoint_id)
    ).one_or_none()
    return None if row is None else dict(row._mapping)


def list_endpoints(
    connection: Connection, *, after: str | None, limit: int
) -> list[dict[str, Any]]:
    query = select(*_endpoint_columns)
    if after is not None:
        query = query.where(WebhookEndpoint.id > after)
    rows = connection.execute(query.order_by(WebhookEndpoint.id).limit(limit))
    return [dict(row._mapping) for row in rows]


def update_endpoint(connection: Connection, endpoint_id: str, values: dict[str, Any]) -> bool:
    result = connection.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(**values)
    )
    return result.rowcount == 1


def delete_endpoint(connection: Connection, endpoint_id: str) -> bool:
    result = connection.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return result.rowcount == 1


def any_enabled(connection: Connection) -> bool:
    found = connection.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.enabled).limit(1))
    return found is not None


_enabled = (
    select(
        WebhookEndpoint.id,
        WebhookEndpoint.url,
        WebhookEndpoint.events,
        WebhookEndpoint.secret,
        WebhookEndpoint.cursor_txid,
        WebhookEndpoint.cursor_id,
        WebhookEndpoint.cursor_snapshot,
    )
    .where(WebhookEndpoint.enabled)
    .order_by(WebhookEndpoint.id)
)


def enabled_endpoints(connection: Connection) -> list[Endpoint]:
    return [Endpoint._make(row) for row in connection.execute(_enabled)]


def lock_enabled(connection: Connection) -> list[Endpoint]:
    """The enabled endpoints that no other process is working on, locked until the end of the
    transaction (PostgreSQL; on SQLite the writer's lock already excludes everyone else)."""
    query = _enabled.with_for_update(skip_locked=True)
    return [Endpoint._make(row) for row in connection.execute(query)]


def move_cursor(
    connection: Connection, endpoint_id: str, position: tuple[int, int], snapshot: str | None
) -> None:
    connection.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(cursor_txid=position[0], cursor_id=position[1], cursor_snapshot=snapshot)
    )


_claimed_columns = (
    WebhookDelivery.id,
    WebhookDelivery.endpoint_id,
    WebhookDelivery.event_id,
    WebhookDelivery.payload,
    WebhookDelivery.attempts,
    WebhookDelivery.created_at,
)
_insert_delivery = insert(WebhookDelivery)
_insert_claimed = insert(WebhookDelivery).returning(*_claimed_columns, sort_by_parameter_order=True)
_settle_delivered = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id.in_(bindparam("ids", expanding=True)),
        WebhookDelivery.status == "pending",
    )
    .values(
        status="delivered",
        attempts=WebhookDelivery.attempts + 1,
        next_attempt_at=bindparam("settled_at"),
    )
    .returning(WebhookDelivery.id)
)
_insert_attempt = insert(WebhookAttempt)
_end_streak = (
    update(WebhookEndpoint)
    .where(
        WebhookEndpoint.id == bindparam("endpoint_id"), WebhookEndpoint.failing_since.is_not(None)
    )
    .values(failing_since=None)
)


def new_delivery(
    endpoint_id: str, event_id: str, payload: str, occurred_at: datetime, *, now: datetime
) -> dict[str, Any]:
    """A delivery created `now` and due at once, for `insert_deliveries` or `insert_claimed`."""
    return {
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def insert_deliveries(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    connection.execute(_insert_delivery, list(rows))


def insert_claimed(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[Claimed]:
    """Insert deliveries whose `next_attempt_at` is already a claim's end (see `claim_due`),
    for the caller to send now."""
    return [Claimed._make(row) for row in connection.execute(_insert_claimed, list(rows))]


def claim_due(
    connection: Connection, endpoint_id: str, *, now: datetime, until: datetime, limit: int
) -> list[Claimed]:
    """Up to `limit` due deliveries of one endpoint, made due again only at `until`: if this
    process dies while sending, another takes them over then."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(connection.scalars(due))
    if not ids:
        return []
    rows = connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(next_attempt_at=until)
        .returning(*_claimed_columns)
    )
    return sorted((Claimed._make(row) for row in rows), key=lambda c: c.id)


def settle_delivery(
    connection: Connection, delivery_id: int, *, status: str, next_attempt_at: datetime
) -> bool:
    """Record an attempt's outcome on a pending delivery; False when it was no longer pending
    (another process settled it, or the endpoint was deleted)."""
    result = connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
        .values(
            status=status,
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=next_attempt_at,
        )
    )
    return result.rowcount == 1


def settle_delivered(connection: Connection, ids: Sequence[int], now: datetime) -> set[int]:
    """Record a successful attempt on each of these deliveries that is still pending, in one
    statement; the ids it was recorded on (another process may have settled the others)."""
    if not ids:
        return set()
    return set(connection.scalars(_settle_delivered, {"ids": list(ids), "settled_at": now}))


def insert_attempts(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    connection.execute(_insert_attempt, list(rows))


def endpoint_succeeded(connection: Connection, endpoint_id: str) -> None:
    connection.execute(_end_streak, {"endpoint_id": endpoint_id})


def endpoint_failed(connection: Connection, endpoint_id: str, now: datetime) -> datetime | None:
    """Start the endpoint's failing streak unless one is under way; when it started."""
    connection.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
    )
    since: datetime | None = connection.scalar(
        select(WebhookEndpoint.failing_since).where(WebhookEndpoint.id == endpoint_id)
    )
    return since


def attempts(
    connection: Connection, endpoint_id: str, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The attempts log of one endpoint, newest first."""
    query = select(*_attempt_columns).where(WebhookAttempt.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(WebhookAttempt.id < before)
    rows = connection.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit))
    return [dict(row._mapping) for row in rows]


def oldest_pending(connection: Connection) -> dict[str, datetime]:
    """For each enabled endpoint with deliveries pending, when its oldest one occurred."""
    rows = connection.execute(
        select(WebhookDelivery.endpoint_id, func.min(WebhookDelivery.occurred_at))
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == "pending", WebhookEndpoint.enabled)
        .group_by(WebhookDelivery.endpoint_id)
    )
    return {row[0]: row[1] for row in rows}


def enabled_ids(connection: Connection) -> list[str]:
    return list(connection.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.enabled)))


def purge_settled(connection: Connection, cutoff: datetime, *, batch: int) -> int:
    """Delete up to `batch` of the oldest settled deliveries created before `cutoff` (their
    attempts go with them)."""
    oldest = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.created_at < cutoff, WebhookDelivery.status != "pending")
        .order_by(WebhookDelivery.id)
        .limit(batch)
    )
    result = connection.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(oldest)))
    return int(result.rowcount)
