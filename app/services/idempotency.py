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
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.core.context import Caller
from app.core.database import Connection, Database, insert_unless_exists
from app.core.errors import (
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReuse,
    ProblemError,
)
from app.models import IdempotencyKey
from app.models.base import utcnow
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


# Built once, their values passed as parameters (bench/RESULTS.md). A key is the pair
# (:key_actor, :key_name); a claim on it is also named by its :owner.
_the_key = (
    IdempotencyKey.actor == bindparam("key_actor"),
    IdempotencyKey.key == bindparam("key_name"),
)
_unanswered = (
    *_the_key,
    IdempotencyKey.owner == bindparam("key_owner"),
    IdempotencyKey.status_code.is_(None),
)
_store_answer = (
    update(IdempotencyKey)
    .where(*_unanswered)
    .values(status_code=bindparam("new_status"), answer=bindparam("new_answer"))
)
_release_claim = delete(IdempotencyKey).where(*_unanswered)
_claim_values: dict[str, Any] = {
    "fingerprint": bindparam("new_fingerprint"),
    "owner": bindparam("key_owner"),
    "lease_until": bindparam("new_lease_until"),
    "status_code": None,
    "answer": None,
    "created_at": bindparam("now"),
    "expires_at": bindparam("new_expires_at"),
}
_insert_claim = insert_unless_exists(
    IdempotencyKey,
    ["actor", "key"],
    actor=bindparam("key_actor"),
    key=bindparam("key_name"),
    **_claim_values,
)
# Expired keys are forgotten, and abandoned claims (their owner died) are taken over.
_take_over = (
    update(IdempotencyKey)
    .where(
        *_the_key,
        or_(
            IdempotencyKey.expires_at <= bindparam("now"),
            and_(
                IdempotencyKey.status_code.is_(None),
                IdempotencyKey.lease_until <= bindparam("now"),
                IdempotencyKey.fingerprint == bindparam("new_fingerprint"),
            ),
        ),
    )
    .values(**_claim_values)
)
_find_key = select(
    IdempotencyKey.fingerprint, IdempotencyKey.status_code, IdempotencyKey.answer
).where(*_the_key)


@dataclass(frozen=True, slots=True)
class Claim:
    actor: str
    key: str
    owner: str

    @property
    def names(self) -> dict[str, str]:
        return {"key_actor": self.actor, "key_name": self.key, "key_owner": self.owner}

    async def store(self, connection: Connection, answer: Answer) -> None:
        """Record the answer inside the transaction of its effect."""
        values = {"new_status": answer.status, "new_answer": _dump(answer)}
        stored = await connection.execute(_store_answer, self.names | values)
        if stored.rowcount != 1:
            raise LostClaim(f"idempotency key {self.key!r} was taken over")


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
    now = utcnow()
    claim = Claim(actor=actor, key=key, owner=uuid.uuid4().hex)
    values = claim.names | {
        "new_fingerprint": request_fingerprint,
        "new_lease_until": now + lease,
        "new_expires_at": now + ttl,
        "now": now,
    }
    async with db.transaction() as connection:
        inserted = await connection.execute(_insert_claim[connection.dialect.name], values)
        if inserted.rowcount == 1:
            return claim
        taken_over = await connection.execute(_take_over, values)
        if taken_over.rowcount == 1:
            return claim
        row = (await connection.execute(_find_key, values)).one()
    if row.fingerprint != request_fingerprint:
        raise IdempotencyKeyReuse(
            "This Idempotency-Key was used with a different request.", idempotency_key=key
        )
    if row.status_code is None:
        raise IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress.",
            headers={"Retry-After": "1"},
        )
    return _load(row.answer)


async def _store_outcome(db: Database, claim: Claim, answer: Answer) -> None:
    async with db.transaction() as connection:
        await claim.store(connection, answer)


async def _release(db: Database, claim: Claim) -> None:
    """Free the key for a retry. If even that fails, the lease frees it a little later."""
    try:
        async with db.transaction() as connection:
            await connection.execute(_release_claim, claim.names)
    except (DatabaseUnavailable, SQLAlchemyError):
        logger.warning("could not release idempotency key %r", claim.key, exc_info=True)


async def purge_expired(db: Database) -> int:
    """Forget keys past their expiry; returns how many."""
    async with db.transaction() as connection:
        result = await connection.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
        )
    return int(result.rowcount)


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
