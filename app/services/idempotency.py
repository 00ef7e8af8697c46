"""Idempotency keys: a repeated request gets the first answer again and changes nothing.

A key is claimed in a transaction of its own before the work starts, so concurrent repeats
see it and are told to wait (409). The work's result is kept with the key in the same unit of
work as its effect (`keep`), so an answer exists exactly when its effect committed. A final
refusal (409, 422) is kept in a transaction of its own (`refused`); any other failure frees
the key for a retry. A claim whose owner died is taken over once its lease ran out.

What is kept is the domain result, as JSON, and whether the request created it; the edge
renders its answer from that, the same way the first time and on a repeat. Refusals, and
answers kept before results were (`{"status", "headers", "body"}`), are kept as answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app.core.database import Database
from app.core.errors import (
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReuse,
    ProblemError,
    problem_body,
)
from app.models.base import utcnow
from app.repositories import idempotency_keys as keys
from app.repositories.idempotency_keys import KeyHolder, StoredKey

# Answers that are final and so replayed; a 5xx is not, the caller may retry it.
STORED_STATUSES = (409, 422)
PURGE_INTERVAL = timedelta(minutes=10)

logger = logging.getLogger(__name__)


class LostClaim(RuntimeError):
    """The lease ran out and another request took the key over; this one must not commit."""


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Replay:
    """The text kept for the first request with this key."""

    text: str


def keep(
    connection: Connection, key: KeyHolder | None, result: BaseModel, *, created: bool
) -> None:
    """Keep `result` with the key, inside the unit that made it; `created`: the request
    created what `result` describes. Without a key there is nothing to keep."""
    if key is None:
        return
    text = json.dumps({"result": result.model_dump(mode="json"), "created": created})
    _keep(connection, key, 201 if created else 200, text)


async def refused(db: Database, key: KeyHolder, error: ProblemError, request_id: str) -> None:
    """The work under `key` failed with `error`: keep a final refusal, else free the key."""
    if error.status not in STORED_STATUSES:
        await release(db, key)
        return
    text = json.dumps(
        {
            "status": error.status,
            "headers": dict(error.headers),
            "body": problem_body(error, request_id),
        }
    )
    await db.write(partial(_keep, key=key, status=error.status, text=text))


def _keep(connection: Connection, key: KeyHolder, status: int, text: str) -> None:
    if not keys.store_answer(connection, key, status, text):
        raise LostClaim(f"idempotency key {key.key!r} was taken over")


async def claim(
    db: Database,
    actor: str,
    *,
    key: str,
    request_fingerprint: str,
    ttl: timedelta,
    lease: timedelta,
) -> KeyHolder | Replay:
    """Claim `key` of `actor` for this request, or the `Replay` of its first answer; 422
    when it was used with another request, 409 while that request is still under way."""
    holder = KeyHolder(actor=actor, key=key, owner=uuid.uuid4().hex)

    def unit(connection: Connection) -> StoredKey | None:
        now = utcnow()
        claimed = keys.claim(
            connection,
            holder,
            fingerprint=request_fingerprint,
            lease_until=now + lease,
            expires_at=now + ttl,
            now=now,
        )
        return None if claimed else keys.find(connection, actor, key)

    stored = await db.write(unit)
    if stored is None:
        return holder
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyKeyReuse(
            "This Idempotency-Key was used with a different request.", idempotency_key=key
        )
    if stored.status_code is None:
        raise IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress.",
            headers={"Retry-After": "1"},
        )
    assert stored.answer is not None
    return Replay(stored.answer)


async def release(db: Database, holder: KeyHolder) -> None:
    """Free the key for a retry. If even that fails, the lease frees it a little later."""
    try:
        await db.write(partial(keys.release, holder=holder))
    except (DatabaseUnavailable, SQLAlchemyError):
        logger.warning("could not release idempotency key %r", holder.key, exc_info=True)


async def purge_expired(db: Database) -> int:
    """Forget keys past their expiry; returns how many."""
    return await db.write(lambda connection: keys.purge_expired(connection, utcnow()))


async def purge_idempotency_keys(db: Database, *, every: timedelta = PURGE_INTERVAL) -> None:
    """Runs for the life of the process; every worker may run it, deleting twice is harmless."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            purged = await purge_expired(db)
        except (DatabaseUnavailable, SQLAlchemyError):
            logger.warning("could not purge expired idempotency keys", exc_info=True)
        else:
            if purged:
                logger.info("purged %d expired idempotency keys", purged)
