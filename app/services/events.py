"""Events: written in the unit of work of the change they tell of (a transactional outbox),
read back as the feed, and handed to the webhook dispatcher after the commit."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection

from app.core import metrics
from app.core.database import Database, after_commit
from app.core.errors import ValidationFailed
from app.models.base import utcnow
from app.repositories import events
from app.repositories.events import NewEvent, StoredEvent
from app.schemas.common import rfc3339
from app.schemas.events import EventOut, EventsPage

# An event id is its feed position: `evt_` then the transaction id and the row id, 16 hex
# digits each, so that ids compare in feed order as strings too.
_EVENT_ID = re.compile(r"^evt_([0-9a-f]{16})([0-9a-f]{16})$")
_WRITTEN = "inventory_events_written"

# Called after every commit that wrote events (False) or changed webhook endpoints (True):
# the dispatcher of this process listens.
_listeners: list[Callable[[bool], None]] = []


def event_id(txid: int, row_id: int) -> str:
    return f"evt_{txid:016x}{row_id:016x}"


def parse_event_id(value: str) -> tuple[int, int]:
    match = _EVENT_ID.match(value)
    if match is None:
        raise ValidationFailed(
            "`after` is not an event id of this feed.",
            errors=[{"field": "after", "message": "Expected an id such as evt_0000…"}],
        )
    return int(match[1], 16), int(match[2], 16)


def new_event(type_: str, data: dict[str, Any]) -> NewEvent:
    return NewEvent(type_, _dump(data))


def emit(connection: Connection, type_: str, data: dict[str, Any]) -> None:
    """Write one event in the unit of work of `connection`: committed with it, or not at all."""
    emit_many(connection, [new_event(type_, data)])


def emit_many(connection: Connection, new: Sequence[NewEvent]) -> None:
    if not new:
        return
    events.insert_many(connection, new, utcnow())
    written(connection, [event.type for event in new])


def _committed(types: list[str]) -> None:
    for type_ in types:
        metrics.count_event(type_)
    types.clear()
    for listener in _listeners:
        listener(False)


def endpoints_changed() -> None:
    """After a commit that created, enabled or changed an endpoint, or queued a test event."""
    for listener in _listeners:
        listener(True)


def listen(callback: Callable[[bool], None]) -> Callable[[], None]:
    """Call `callback` after each commit that wrote events or changed endpoints; returns what
    stops it."""
    _listeners.append(callback)
    return lambda: _listeners.remove(callback)


def stock_events(
    product_id: str,
    *,
    quantity_before: int,
    quantity_after: int,
    available_before: int,
    available_after: int,
    threshold: int | None,
) -> list[NewEvent]:
    """`stock.low`, `stock.depleted` and `stock.restocked`, for a change of one product."""
    new: list[NewEvent] = []
    if threshold is not None and quantity_before > threshold >= quantity_after:
        new.append(NewEvent("stock.low", _dump(low_stock(product_id, quantity_after, threshold))))
    availability = available(product_id, quantity_after, available_after)
    if available_before > 0 and available_after == 0:
        new.append(NewEvent("stock.depleted", _dump(availability)))
    elif available_before == 0 and available_after > 0:
        new.append(NewEvent("stock.restocked", _dump(availability)))
    return new


def low_stock(product_id: str, quantity: object, threshold: object) -> dict[str, Any]:
    """The data of `stock.low`."""
    return {"product_id": product_id, "quantity": quantity, "low_stock_threshold": threshold}


def available(product_id: str, quantity: object, units: object) -> dict[str, Any]:
    """The data of `stock.depleted` and `stock.restocked`."""
    return {"product_id": product_id, "quantity": quantity, "available": units}


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Slot:
    """In the data of an event written by one statement, a value only that statement knows:
    `format()`'s `%n$s`, within quotes when the value is a JSON string."""

    number: int
    quoted: bool = False


def template(data: dict[str, Any]) -> str:
    """The text `new_event` would write for `data`, as a PostgreSQL `format()` string whose
    `Slot`s the writing statement fills in."""
    slots: list[Slot] = []

    def mark(value: object) -> str:
        if not isinstance(value, Slot):
            raise TypeError(f"{type(value).__name__} is not JSON")
        slots.append(value)
        return f"\x00slot{value.number}\x00"

    text = json.dumps(data, separators=(",", ":"), default=mark).replace("%", "%%")
    for slot in slots:
        placeholder = f"%{slot.number}$s"
        text = text.replace(
            f'"\\u0000slot{slot.number}\\u0000"',
            f'"{placeholder}"' if slot.quoted else placeholder,
        )
    return text


def written(connection: Connection, types: Sequence[str]) -> None:
    """Events of these types were written in the unit of `connection` (by its own statement):
    counted and announced to listeners once it commits, as `emit_many` does."""
    if not types:
        return
    pending: list[str] | None = connection.info.get(_WRITTEN)
    if pending is None:
        pending = connection.info[_WRITTEN] = []
        after_commit(connection, partial(_committed, pending))
    pending.extend(types)


def envelope(event: StoredEvent) -> dict[str, Any]:
    """The event as the feed and webhooks show it."""
    return {
        "id": event_id(event.txid, event.id),
        "type": event.type,
        "occurred_at": rfc3339(event.occurred_at),
        "data": json.loads(event.data),
    }


def envelope_json(event: StoredEvent) -> str:
    """`envelope(event)` as compact JSON, its stored `data` spliced in as it is rather than
    parsed and written again."""
    head = json.dumps(
        {
            "id": event_id(event.txid, event.id),
            "type": event.type,
            "occurred_at": rfc3339(event.occurred_at),
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"data":{event.data}}}'


async def list_events(
    db: Database, *, after: str | None, type_: str | None, limit: int
) -> EventsPage:
    """The feed, oldest first, after the event id `after`."""
    position = (0, 0) if after is None else parse_event_id(after)
    types = None if type_ is None else [type_]

    def query(connection: Connection) -> list[StoredEvent]:
        horizon = events.horizon(connection)
        return events.after(connection, position, horizon=horizon, types=types, limit=limit)

    # Outside a transaction: the events are read with a snapshot taken after the horizon was.
    rows = await db.read_one(query)
    return EventsPage(items=[EventOut.model_validate(envelope(row)) for row in rows])


async def purge_events(db: Database, *, retention: timedelta, batch: int = 10_000) -> int:
    """Delete events past their retention, a batch per transaction; how many went."""
    purged = 0
    cutoff = utcnow() - retention
    while True:
        gone = await db.write(partial(events.purge_before, cutoff=cutoff, batch=batch))
        purged += gone
        if gone < batch:
            return purged
