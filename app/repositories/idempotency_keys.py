"""The `idempotency_keys` table: a request's key, who holds it, and the answer once stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.models import IdempotencyKey


class KeyHolder(NamedTuple):
    """Whose a key is: the actor's key name, claimed by `owner` (one request)."""

    actor: str
    key: str
    owner: str


class StoredKey(NamedTuple):
    fingerprint: str
    status_code: int | None
    answer: str | None


# Built once, values passed as parameters (docs/performance.md). A key is the pair
# (:key_actor, :key_name); a claim on it is also named by its :key_owner.
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
_release = delete(IdempotencyKey).where(*_unanswered)
_claim_values: dict[str, Any] = {
    "fingerprint": bindparam("new_fingerprint"),
    "owner": bindparam("key_owner"),
    "lease_until": bindparam("new_lease_until"),
    "status_code": None,
    "answer": None,
    "created_at": bindparam("now"),
    "expires_at": bindparam("new_expires_at"),
}
_insert_claim = {
    name: dialect.insert(IdempotencyKey)
    .values(actor=bindparam("key_actor"), key=bindparam("key_name"), **_claim_values)
    .on_conflict_do_nothing(index_elements=["actor", "key"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
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
_find = select(IdempotencyKey.fingerprint, IdempotencyKey.status_code, IdempotencyKey.answer).where(
    *_the_key
)


def _names(holder: KeyHolder) -> dict[str, str]:
    return {"key_actor": holder.actor, "key_name": holder.key, "key_owner": holder.owner}


def claim(
    connection: Connection,
    holder: KeyHolder,
    *,
    fingerprint: str,
    lease_until: datetime,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """Claim the key for `holder`: a new key, an expired one, or one whose lease ran out."""
    values = _names(holder) | {
        "new_fingerprint": fingerprint,
        "new_lease_until": lease_until,
        "new_expires_at": expires_at,
        "now": now,
    }
    if connection.execute(_insert_claim[connection.dialect.name], values).rowcount == 1:
        return True
    return connection.execute(_take_over, values).rowcount == 1


def find(connection: Connection, actor: str, key: str) -> StoredKey:
    row = connection.execute(_find, {"key_actor": actor, "key_name": key}).one()
    return StoredKey(row.fingerprint, row.status_code, row.answer)


def store_answer(connection: Connection, holder: KeyHolder, status: int, answer: str) -> bool:
    """Record the answer of the claim; False when the claim was taken over meanwhile."""
    values = _names(holder) | {"new_status": status, "new_answer": answer}
    return connection.execute(_store_answer, values).rowcount == 1


def release(connection: Connection, holder: KeyHolder) -> None:
    """Forget an unanswered claim, so the key can be used again at once."""
    connection.execute(_release, _names(holder))


def purge_expired(connection: Connection, now: datetime) -> int:
    """Forget keys past their expiry; how many."""
    result = connection.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return int(result.rowcount)
