"""Webhook endpoints: register, read, change, forget; their deliveries log and test event.
Delivering is `app.services.deliveries`'s job."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from functools import partial
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from sqlalchemy import Connection

from app.clients.webhook_targets import AddressRefused, InvalidTarget, parse_target
from app.clients.webhooks import WebhookSender
from app.core.database import Database, after_commit
from app.core.errors import NotFound, ValidationFailed
from app.models.base import utcnow
from app.models.movement import MAX_MOVEMENT_ID
from app.repositories import events as event_rows
from app.repositories import webhooks
from app.schemas.common import Page, is_issued_id, rfc3339
from app.schemas.events import EventOut
from app.schemas.webhooks import AttemptOut, WebhookCreated, WebhookIn, WebhookOut, WebhookPatch
from app.services import events
from app.services.cursors import decode_cursor, encode_cursor, list_scope

TEST_EVENT = "webhook.test"

_attempt_position = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_MOVEMENT_ID)])
_endpoint_position = TypeAdapter(Annotated[str, Field(max_length=36)])


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"No webhook endpoint {endpoint_id!r}.")


def _require_issuable(endpoint_id: str) -> None:
    if not is_issued_id(endpoint_id):
        raise _not_found(endpoint_id)


def _out(row: dict[str, Any]) -> WebhookOut:
    return WebhookOut.model_validate({**row, "events": json.loads(row["events"])})


def new_secret() -> str:
    """24 random bytes, as Standard Webhooks recommends (24 to 64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def _checked_url(sender: WebhookSender, url: str) -> str:
    try:
        target = parse_target(url)
    except InvalidTarget as invalid:
        raise ValidationFailed(
            "A webhook URL is an http:// or https:// URL with a valid host name or address "
            "and a port in 1–65535.",
            errors=[{"field": "url", "message": f"Expected http(s)://host[:port]/…: {invalid}"}],
        ) from None
    try:
        await sender.check(target)
    except AddressRefused as refused:
        raise ValidationFailed(
            f"Webhooks cannot be sent there: {refused}.",
            errors=[{"field": "url", "message": str(refused)}],
        ) from None
    return url


async def create_endpoint(
    db: Database, sender: WebhookSender, *, body: WebhookIn
) -> WebhookCreated:
    """Register an endpoint; it receives the events committed from now on."""
    url = await _checked_url(sender, body.url)
    endpoint_id = str(uuid.uuid4())
    secret = new_secret()

    def unit(connection: Connection) -> dict[str, Any]:
        now = utcnow()
        start = event_rows.head(connection)
        webhooks.insert_endpoint(
            connection,
            {
                "id": endpoint_id,
                "url": url,
                "description": body.description,
                "events": json.dumps(body.events),
                "secret": secret,
                "enabled": True,
                "cursor_txid": start.position[0],
                "cursor_id": start.position[1],
                "cursor_snapshot": start.snapshot,
                "created_at": now,
                "updated_at": now,
            },
        )
        after_commit(connection, events.endpoints_changed)
        found = webhooks.find_endpoint(connection, endpoint_id)
        assert found is not None
        return found

    row = await db.write(unit)
    return WebhookCreated.model_validate({**_out(row).model_dump(), "secret": secret})


async def get_endpoint(db: Database, *, endpoint_id: str) -> WebhookOut:
    _require_issuable(endpoint_id)
    row = await db.read_one(partial(webhooks.find_endpoint, endpoint_id=endpoint_id))
    if row is None:
        raise _not_found(endpoint_id)
    return _out(row)


async def list_endpoints(db: Database, *, limit: int, cursor: str | None) -> Page[WebhookOut]:
    scope = list_scope("webhooks")
    after = None if cursor is None else decode_cursor(scope, cursor, _endpoint_position)
    rows = await db.read_one(partial(webhooks.list_endpoints, after=after, limit=limit + 1))
    page = rows[:limit]
    next_cursor = encode_cursor(scope, page[-1]["id"]) if len(rows) > limit else None
    return Page[WebhookOut](items=[_out(row) for row in page], next_cursor=next_cursor)


async def update_endpoint(db: Database, *, endpoint_id: str, patch: WebhookPatch) -> WebhookOut:
    """Change what an endpoint receives, or turn it off or on. Turned back on, it receives
    the events committed from then on: the feed keeps the ones it missed."""
    _require_issuable(endpoint_id)
    changes: dict[str, Any] = {}
    if patch.events is not None:
        changes["events"] = json.dumps(patch.events)
    if patch.description is not None:
        changes["description"] = patch.description

    def unit(connection: Connection) -> dict[str, Any]:
        current = webhooks.find_endpoint(connection, endpoint_id)
        if current is None:
            raise _not_found(endpoint_id)
        values = {**changes, "updated_at": utcnow()}
        if patch.enabled is not None and patch.enabled != current["enabled"]:
            values["enabled"] = patch.enabled
            if patch.enabled:
                start = event_rows.head(connection)
                values |= {
                    "cursor_txid": start.position[0],
                    "cursor_id": start.position[1],
                    "cursor_snapshot": start.snapshot,
                    "failing_since": None,
                    "disabled_reason": None,
                }
        webhooks.update_endpoint(connection, endpoint_id, values)
        after_commit(connection, events.endpoints_changed)
        found = webhooks.find_endpoint(connection, endpoint_id)
        assert found is not None
        return found

    return _out(await db.write(unit))


async def delete_endpoint(db: Database, *, endpoint_id: str) -> None:
    """Forget an endpoint, its pending deliveries and its log."""
    _require_issuable(endpoint_id)
    if not await db.write(partial(webhooks.delete_endpoint, endpoint_id=endpoint_id)):
        raise _not_found(endpoint_id)


async def list_attempts(
    db: Database, *, endpoint_id: str, limit: int, cursor: str | None
) -> Page[AttemptOut]:
    """The deliveries log of one endpoint: every attempt, newest first."""
    _require_issuable(endpoint_id)
    scope = list_scope("webhook-attempts", endpoint_id=endpoint_id)

    def query(connection: Connection) -> list[dict[str, Any]] | None:
        # An endpoint that does not exist is 404 whatever cursor came with it.
        if webhooks.find_endpoint(connection, endpoint_id) is None:
            return None
        before = None if cursor is None else decode_cursor(scope, cursor, _attempt_position)
        return webhooks.attempts(connection, endpoint_id, before=before, limit=limit + 1)

    rows = await db.read(query)
    if rows is None:
        raise _not_found(endpoint_id)
    page = rows[:limit]
    items = [AttemptOut.model_validate({**row, "id": str(row["id"])}) for row in page]
    next_cursor = encode_cursor(scope, page[-1]["id"]) if len(rows) > limit else None
    return Page[AttemptOut](items=items, next_cursor=next_cursor)


async def send_test_event(db: Database, *, endpoint_id: str) -> EventOut:
    """Queue a `webhook.test` event for this endpoint only; it is not in the feed."""
    _require_issuable(endpoint_id)
    now = utcnow()
    event = EventOut(
        id=f"evt_test_{uuid.uuid4().hex}",
        type=TEST_EVENT,
        occurred_at=rfc3339(now),
        data={"endpoint_id": endpoint_id},
    )

    def unit(connection: Connection) -> None:
        if webhooks.find_endpoint(connection, endpoint_id) is None:
            raise _not_found(endpoint_id)
        payload = json.dumps(event.model_dump(), separators=(",", ":"))
        webhooks.insert_deliveries(
            connection, [webhooks.new_delivery(endpoint_id, event.id, payload, now, now=now)]
        )
        after_commit(connection, events.endpoints_changed)

    await db.write(unit)
    return event
