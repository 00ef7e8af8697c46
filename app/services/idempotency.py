"""Idempotency keys: a repeated request gets the first answer again and changes nothing.

A key is claimed in a transaction of its own before the work starts, so concurrent repeats
see it and are told to wait (409). The answer is stored in the same transaction as the
work's effect, so an answer exists exactly when its effect committed. A claim whose owner
died is taken over once its lease ran out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app.core.context import Caller
from app.core.database import Database
from app.core.errors import (
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReuse,
    ProblemError,
)
from app.models.base import utcnow
from app.repositories import idempotency_keys as keys
from app.repositories.idempotency_keys import KeyHolder, StoredKey
from app.services.answers import Answer

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
class Claim:
    """A key claimed for one request; its answer is stored in the unit of its effect."""

    holder: KeyHolder

    def store(self, connection: Connection, answer: Answer) -> None:
        if not keys.store_answer(connection, self.holder, answer.status, _dump(answer)):
            raise LostClaim(f"idempotency key {self.holder.key!r} was taken over")


Work = Callable[[Claim | None], Awaitable[Answer]]


async def run_once(
    db: Database,
    caller: Caller,
    *,
    key: str | None,
    request_fingerprint: str,
    ttl: timedelta,
    lease: timedelta,
    work: Work,
) -> Answer:
    """Run `work` at most once per key; `work` stores its answer through the claim it gets."""
    if key is None:
        return await work(None)
    claimed = await _claim(db, caller.actor, key, request_fingerprint, ttl, lease)
    if isinstance(claimed, Answer):
        return claimed
    try:
        return await work(claimed)
    except ProblemError as error:
        if error.status in STORED_STATUSES:
            await _store_outcome(db, claimed, Answer.of_problem(error, caller.request_id))
        else:
            await _release(db, claimed)
        raise
    except BaseException:
        await _release(db, claimed)
        raise


async def _claim(
    db: Database,
    actor: str,
    key: str,
    request_fingerprint: str,
    ttl: timedelta,
    lease: timedelta,
) -> Claim | Answer:
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
        return Claim(holder)
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyKeyReuse(
            "This Idempotency-Key was used with a different request.", idempotency_key=key
        )
    if stored.status_code is None:
        raise IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress.",
            headers={"Retry-After": "1"},
        )
    return _load(stored.answer)


async def _store_outcome(db: Database, claim: Claim, answer: Answer) -> None:
    await db.write(partial(claim.store, answer=answer))


async def _release(db: Database, claim: Claim) -> None:
    """Free the key for a retry. If even that fails, the lease frees it a little later."""
    try:
        await db.write(partial(keys.release, holder=claim.holder))
    except (DatabaseUnavailable, SQLAlchemyError):
        logger.warning("could not release idempotency key %r", claim.holder.key, exc_info=True)


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


def _dump(answer: Answer) -> str:
    return json.dumps({"status": answer.status, "headers": answer.headers, "body": answer.body})


def _load(stored: str | None) -> Answer:
    assert stored is not None
    data = json.loads(stored)
    return Answer(data["status"], data["body"], data["headers"], replayed=True)
