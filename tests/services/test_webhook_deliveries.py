"""What an attempt's outcome does to its delivery and endpoint; the SSRF guard at send time."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Connection, select, update

from app.clients.webhook_targets import AddressRefused, checked_address, parse_target
from app.clients.webhooks import Outcome, WebhookSender
from app.core.database import Database
from app.core.metrics import DeliveryOutcome
from app.models import WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.repositories import webhooks as rows
from app.schemas.webhooks import WebhookIn
from app.services import deliveries, webhooks
from app.services.deliveries import DISABLE_AFTER, MAX_RETRY_DELAY_SECONDS, RETRY_FOR, retry_delay
from tests.support.receiver import receiving


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The database without the service around it: no delivery loop claims behind our back."""
    database = Database(database_url)
    yield database
    await database.dispose()


FAILED = Outcome(status_code=500, error=None, duration_ms=1.0)
DELIVERED = Outcome(status_code=204, error=None, duration_ms=1.0)


def test_retry_delays_double_with_jitter_up_to_an_hour() -> None:
    rng = random.Random(7)
    delays = [retry_delay(5, n, rng) for n in range(1, 16)]
    for n, delay in enumerate(delays[:8], start=1):
        assert 0.8 * 5 * 2 ** (n - 1) <= delay <= 1.2 * 5 * 2 ** (n - 1)
    assert max(delays) == MAX_RETRY_DELAY_SECONDS
    # Retries cover at least RETRY_FOR: the schedule is not what gives up, the clock is.
    assert sum(delays) < RETRY_FOR.total_seconds()


async def _endpoint_with_delivery(db: Database, url: str = "https://hooks.example/x") -> int:
    sender = WebhookSender(timeout_seconds=1, allowed_hosts=(), resolver=_public)
    created = await webhooks.create_endpoint(db, sender, body=WebhookIn(url=url, events=["*"]))
    await webhooks.send_test_event(db, endpoint_id=created.id)
    delivery_id: int | None = await db.read(lambda c: c.scalar(select(WebhookDelivery.id)))
    assert delivery_id is not None
    return delivery_id


async def _public(_host: str, _port: int) -> list[str]:
    return ["93.184.215.14"]


async def _claim(db: Database) -> rows.Claimed:
    [endpoint] = await db.read(rows.enabled_endpoints)
    now = utcnow()
    [claimed] = await db.write(
        lambda c: rows.claim_due(c, endpoint.id, now=now, until=now + timedelta(seconds=9), limit=5)
    )
    return claimed


def _record(
    claimed: rows.Claimed, outcome: Outcome, now_offset: timedelta = timedelta()
) -> Callable[[Connection], DeliveryOutcome | None]:
    def unit(connection: Connection) -> DeliveryOutcome | None:
        [recorded] = deliveries.record_outcomes(
            connection,
            [(claimed, outcome)],
            now=utcnow() + now_offset,
            retry_base_seconds=5,
            rng=random.Random(1),
        )
        return recorded

    return unit


async def test_a_failure_is_retried_until_a_day_has_passed_then_given_up(db: Database) -> None:
    delivery_id = await _endpoint_with_delivery(db)
    claimed = await _claim(db)
    assert await db.write(_record(claimed, FAILED)) == "retried"
    status, due = await db.read(
        lambda c: c.execute(
            select(WebhookDelivery.status, WebhookDelivery.next_attempt_at).where(
                WebhookDelivery.id == delivery_id
            )
        ).one()
    )
    assert status == "pending"
    assert 3.9 <= (due - utcnow()).total_seconds() <= 6.1
    # A second outcome for the same claim (another process took over) changes nothing more.
    assert await db.write(_record(claimed, FAILED, RETRY_FOR)) == "failed"
    assert await db.write(_record(claimed, DELIVERED)) is None
    settled: str | None = await db.read(
        lambda c: c.scalar(select(WebhookDelivery.status).where(WebhookDelivery.id == delivery_id))
    )
    assert settled == "failed"


async def test_an_endpoint_failing_for_five_days_is_disabled(db: Database) -> None:
    await _endpoint_with_delivery(db)
    claimed = await _claim(db)
    await db.write(
        lambda c: c.execute(update(WebhookEndpoint).values(failing_since=utcnow() - DISABLE_AFTER))
    )
    await db.write(_record(claimed, FAILED))
    enabled, reason = await db.read(
        lambda c: c.execute(select(WebhookEndpoint.enabled, WebhookEndpoint.disabled_reason)).one()
    )
    assert enabled is False
    assert reason is not None
    assert reason.startswith("every delivery failed since")


async def test_a_success_ends_the_failing_streak(db: Database) -> None:
    await _endpoint_with_delivery(db)
    await webhooks.send_test_event(db, endpoint_id=(await db.read(rows.enabled_ids))[0])
    first, second = await _claim_two(db)
    await db.write(_record(first, FAILED))
    assert await db.read(lambda c: c.scalar(select(WebhookEndpoint.failing_since))) is not None
    await db.write(_record(second, DELIVERED))
    assert await db.read(lambda c: c.scalar(select(WebhookEndpoint.failing_since))) is None


async def _claim_two(db: Database) -> list[rows.Claimed]:
    [endpoint] = await db.read(rows.enabled_endpoints)
    now = utcnow()
    return await db.write(
        lambda c: rows.claim_due(c, endpoint.id, now=now, until=now + timedelta(seconds=9), limit=5)
    )


async def test_a_name_that_turns_internal_after_subscribing_is_refused_at_send() -> None:
    """DNS rebinding: the check is made on the address the request would go to, each time."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def rebinding(_host: str, _port: int) -> list[str]:
        return next(answers)

    async with receiving() as receiver:
        port = httpx.URL(receiver.url).port
        sender = WebhookSender(timeout_seconds=1, allowed_hosts=(), resolver=rebinding)
        url = f"http://hooks.example:{port}/hook"
        assert await sender.check(parse_target(url)) == "93.184.215.14"
        outcome = await sender.send(url=url, secret="whsec_AAAA", event_id="evt_x", payload="{}")
    assert outcome.refused
    assert "127.0.0.1" in (outcome.error or "")
    assert receiver.requests == 0


@pytest.mark.parametrize(
    ("addresses", "allowed"),
    [(["93.184.215.14", "10.0.0.1"], ()), (["224.0.0.1"], ()), ([], ())],
)
async def test_every_address_of_a_name_must_be_public(
    addresses: list[str], allowed: tuple[str, ...]
) -> None:
    async def resolver(_host: str, _port: int) -> list[str]:
        return addresses

    with pytest.raises(AddressRefused):
        await checked_address("hooks.example", 80, allowed, resolver)


async def test_an_unresolvable_name_is_refused() -> None:
    async def failing(_host: str, _port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(AddressRefused, match="cannot be resolved"):
        await checked_address("nowhere.invalid", 443, (), failing)


async def test_a_listed_host_may_be_internal() -> None:
    async def loopback(_host: str, _port: int) -> list[str]:
        return ["127.0.0.1"]

    address = await checked_address("receiver.internal", 8080, ("receiver.internal",), loopback)
    assert address == "127.0.0.1"
