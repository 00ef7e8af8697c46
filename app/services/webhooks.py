"""Webhook endpoints: register, read, change, forget; their deliveries log and test event; and
what one delivery attempt's outcome means for the delivery and its endpoint."""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any

import httpx
from pydantic import Field, TypeAdapter
from sqlalchemy import Connection

from app.clients.webhooks import AddressRefused, Outcome, WebhookSender
from app.core import metrics
from app.core.database import Database, after_commit
from app.core.errors import NotFound, ValidationFailed
from app.models.base import utcnow
from app.models.movement import MAX_MOVEMENT_ID
from app.repositories import events as event_rows
from app.repositories import webhooks
from app.repositories.webhooks import Claimed
from app.schemas.common import ISSUED_ID_PATTERN, Page, rfc3339
from app.schemas.events import EventOut
from app.schemas.webhooks import AttemptOut, WebhookCreated, WebhookIn, WebhookOut, WebhookPatch
from app.services import events
from app.services.cursors import decode_cursor, encode_cursor, list_scope

# Retries go on at least this long after the first attempt; then the delivery has failed.
RETRY_FOR = timedelta(hours=24)
MAX_RETRY_DELAY_SECONDS = 3600.0
# An endpoint none of whose attempts succeeded for this long is disabled.
DISABLE_AFTER = timedelta(days=5)
TEST_EVENT = "webhook.test"

_attempt_position = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_MOVEMENT_ID)])
_endpoint_position = TypeAdapter(Annotated[str, Field(max_length=36)])
_ENDPOINT_ID = re.compile(ISSUED_ID_PATTERN)


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"No webhook endpoint {endpoint_id!r}.")


def _require_issuable(endpoint_id: str) -> None:
    """Only ids the service could have issued reach a query; any other names nothing."""
    if not _ENDPOINT_ID.fullmatch(endpoint_id):
        raise _not_found(endpoint_id)


def _out(row: dict[str, Any]) -> WebhookOut:
    return WebhookOut.model_validate({**row, "events": json.loads(row["events"])})


def new_secret() -> str:
    """24 random bytes, as Standard Webhooks recommends (24 to 64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def _checked_url(sender: WebhookSender, url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationFailed(
            "A webhook URL is an http:// or https:// URL with a host.",
            errors=[{"field": "url", "message": "Expected http(s)://host/…"}],
        )
    try:
        await sender.check(parsed)
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
            connection, [_delivery(endpoint_id, event.id, payload, now, now)]
        )
        after_commit(connection, events.endpoints_changed)

    await db.write(unit)
    return event


def _delivery(
    endpoint_id: str, event_id: str, payload: str, occurred_at: datetime, now: datetime
) -> dict[str, Any]:
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


def fan_out(
    connection: Connection,
    *,
    batch: int,
    claim: Mapping[str, int],
    until: datetime,
) -> dict[str, list[Claimed]]:
    """Turn the feed's new events into deliveries, for every endpoint no other process is
    serving right now. The first `claim[endpoint id]` new deliveries of an endpoint are made
    already claimed until `until` (as `claim_due` would) and returned, for the caller to send
    at once: a fresh event costs no second statement to claim it."""
    now = utcnow()
    claimed: dict[str, list[Claimed]] = {}
    for endpoint in webhooks.lock_enabled(connection):
        new = event_rows.after(connection, (endpoint.cursor_txid, endpoint.cursor_id), limit=batch)
        if not new:
            continue
        wanted = json.loads(endpoint.events)
        snapshot = endpoint.cursor_snapshot
        rows = [
            _delivery(
                endpoint.id,
                events.event_id(event.txid, event.id),
                events.envelope_json(event),
                event.occurred_at,
                now,
            )
            for event in new
            if ("*" in wanted or event.type in wanted)
            and not (snapshot and event_rows.committed_in(snapshot, event.txid))
        ]
        room = claim.get(endpoint.id, 0)
        if room and rows:
            for row in rows[:room]:
                row["next_attempt_at"] = until
            claimed[endpoint.id] = webhooks.insert_claimed(connection, rows[:room])
        if rows[room:]:
            webhooks.insert_deliveries(connection, rows[room:])
        last = new[-1]
        # Past the snapshot's xmax, every transaction began after the endpoint subscribed.
        if snapshot and last.txid >= int(snapshot.split(":")[1]):
            snapshot = None
        webhooks.move_cursor(connection, endpoint.id, (last.txid, last.id), snapshot)
    return claimed


def retry_delay(base_seconds: float, failures: int, rng: random.Random) -> float:
    """The pause after the `failures`-th failed attempt: doubling from `base_seconds`, with
    ±20 % jitter so that retries of one outage spread out, and at most an hour."""
    return min(
        MAX_RETRY_DELAY_SECONDS, base_seconds * 2.0 ** (failures - 1) * rng.uniform(0.8, 1.2)
    )


def record_outcomes(
    connection: Connection,
    results: Sequence[tuple[Claimed, Outcome]],
    *,
    now: datetime,
    retry_base_seconds: float,
    rng: random.Random,
) -> list[metrics.DeliveryOutcome | None]:
    """Settle or reschedule each delivery, log its attempt, and keep its endpoint's failing
    streak; None for a delivery another process had settled already. The successes are
    settled in one statement and the attempts logged in one: a batch costs the writer a few
    statements, not three per delivery."""
    settled = webhooks.settle_delivered(
        connection, [claimed.id for claimed, outcome in results if outcome.delivered], now
    )
    recorded: list[metrics.DeliveryOutcome | None] = []
    attempts: list[dict[str, Any]] = []
    succeeded: set[str] = set()
    failed: set[str] = set()
    for claimed, outcome in results:
        next_attempt: datetime | None = None
        result: metrics.DeliveryOutcome
        if outcome.delivered:
            if claimed.id not in settled:
                recorded.append(None)
                continue
            result = "delivered"
            succeeded.add(claimed.endpoint_id)
        else:
            failures = claimed.attempts + 1
            if now - claimed.created_at >= RETRY_FOR:
                status, result = "failed", "failed"
            else:
                status, result = "pending", "refused" if outcome.refused else "retried"
                delay = retry_delay(retry_base_seconds, failures, rng)
                next_attempt = now + timedelta(seconds=delay)
            if not webhooks.settle_delivery(
                connection, claimed.id, status=status, next_attempt_at=next_attempt or now
            ):
                recorded.append(None)
                continue
            failed.add(claimed.endpoint_id)
        recorded.append(result)
        attempts.append(
            {
                "endpoint_id": claimed.endpoint_id,
                "delivery_id": claimed.id,
                "event_id": claimed.event_id,
                "attempted_at": now,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "duration_ms": round(outcome.duration_ms, 3),
                "next_attempt_at": next_attempt,
            }
        )
    if attempts:
        webhooks.insert_attempts(connection, attempts)
    for endpoint_id in succeeded:
        webhooks.endpoint_succeeded(connection, endpoint_id)
    # An endpoint with a success in the batch is not failing, whatever else failed beside it.
    for endpoint_id in sorted(failed - succeeded):
        since = webhooks.endpoint_failed(connection, endpoint_id, now)
        if since is not None and now - since >= DISABLE_AFTER:
            webhooks.update_endpoint(
                connection,
                endpoint_id,
                {
                    "enabled": False,
                    "disabled_reason": f"every delivery failed since {rfc3339(since)}",
                    "updated_at": now,
                },
            )
    return recorded
