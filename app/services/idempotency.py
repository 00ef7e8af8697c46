"""Idempotency keys: a repeated request gets the first answer again and changes nothing.

A key is claimed in a transaction of its own before the work starts, so concurrent repeats
see it and are told to wait (409). The answer is stored in the same transaction as the
work's effect, so an answer exists exactly when its effect committed. A claim whose owner
died is taken over once its lease ran out.

What an answer looks like is the caller's business (the HTTP edge writes it down through a
`Writer`); here it is a status and a text, stored and handed back as they are.
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
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

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

# Answers that are final and so replayed; a 5xx is not, the caller may retry it.
STORED_STATUSES = (409, 422)
PURGE_INTERVAL = timedelta(minutes=10)

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", contravariant=True)


class LostClaim(RuntimeError):
    """The lease ran out and another request took the key over; this one must not commit."""


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Written:
    """An answer written down for its key: its status, and the text a repeat gets back."""

    status: int
    text: str


class Writer(Protocol[R]):
    """Writes down the answer to a result of the work, or to a final refusal of it."""

    def result(self, result: R, /) -> Written: ...

    def refusal(self, error: ProblemError, /) -> Written: ...


@dataclass(frozen=True, slots=True)
class Replay:
    """The text written down for the first request with this key."""

    text: str


@dataclass(frozen=True, slots=True)
class Claim(Generic[T]):
    """A key claimed for one request; its answer is stored in the unit of its effect."""

    holder: KeyHolder
    writer: Writer[T]

    def store(self, connection: Connection, result: T) -> None:
        """Keep the answer to `result` with the key, inside the unit that made `result`."""
        _keep(connection, self.holder, self.writer.result(result))


async def run_once(
    db: Database,
    actor: str,
    *,
    key: str | None,
    request_fingerprint: str,
    ttl: timedelta,
    lease: timedelta,
    writer: Writer[T],
    work: Callable[[Claim[T] | None], Awaitable[T]],
) -> T | Replay:
    """Run `work` at most once per key of `actor`; `work` stores its result through the
    claim it gets. A repeat gets the `Replay` of what was written down."""
    if key is None:
        return await work(None)
    claimed = await _claim(db, actor, key, request_fingerprint, ttl, lease)
    if isinstance(claimed, Replay):
        return claimed
    holder = claimed
    try:
        return await work(Claim(holder, writer))
    except ProblemError as error:
        if error.status in STORED_STATUSES:
            await db.write(partial(_keep, holder=holder, written=writer.refusal(error)))
        else:
            await _release(db, holder)
        raise
    except BaseException:
        await _release(db, holder)
        raise


def _keep(connection: Connection, holder: KeyHolder, written: Written) -> None:
    if not keys.store_answer(connection, holder, written.status, written.text):
        raise LostClaim(f"idempotency key {holder.key!r} was taken over")


async def _claim(
    db: Database,
    actor: str,
    key: str,
    request_fingerprint: str,
    ttl: timedelta,
    lease: timedelta,
) -> KeyHolder | Replay:
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


async def _release(db: Database, holder: KeyHolder) -> None:
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
