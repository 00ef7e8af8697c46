"""Delivering webhooks: the delivery loop of one process, and what an attempt's outcome means
for its delivery and its endpoint.

Each cycle, in one unit of work, claims a batch of due deliveries for each endpoint this
process is not already sending to, then hands the feed's new events to every endpoint that no
other process is serving (its row locked with SKIP LOCKED on PostgreSQL, the writer's lock on
SQLite), the first of them claimed at once to fill those batches. Each endpoint's batch is
sent concurrently in a task of its own and its outcomes recorded together in one unit of
work, so a slow or dead endpoint only ever holds up its own batch. A claim pushes the
delivery's due time past the attempt's deadline: if the process dies while sending, another
process sends it again then (at least once; the receiver dedupes on `webhook-id`). An attempt
that fails in any way, the sender's own errors included, is recorded and retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app.clients.webhooks import Outcome, WebhookSender
from app.core import metrics
from app.core.database import Database
from app.core.errors import DatabaseUnavailable
from app.models.base import utcnow
from app.repositories import events as event_rows
from app.repositories import webhooks
from app.repositories.webhooks import Claimed
from app.schemas.common import rfc3339
from app.services import events

logger = logging.getLogger("app.webhooks")

# Deliveries one process claims for one endpoint at a time, and how many of them it sends at
# once: a receiver sees a few connections from each process, not one per delivery.
BATCH_PER_ENDPOINT = 64
SENDS_PER_ENDPOINT = 8
# Cycles start at most this often, however many commits wake the loop: under load each cycle
# takes many events at once instead of running once per commit (docs/performance.md).
MIN_CYCLE_SECONDS = 0.05
# Events handed to one endpoint per cycle at most.
FAN_OUT_BATCH = 1000
# Retries go on at least this long after the first attempt; then the delivery has failed.
RETRY_FOR = timedelta(hours=24)
MAX_RETRY_DELAY_SECONDS = 3600.0
# An endpoint none of whose attempts succeeded for this long is disabled.
DISABLE_AFTER = timedelta(days=5)


@dataclass(slots=True)
class Dispatcher:
    db: Database
    sender: WebhookSender
    retry_base_seconds: float
    timeout_seconds: float
    # Other processes' commits are not announced here: they are found by polling.
    poll_seconds: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _has_endpoints: bool = True
    _sending: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _secrets: dict[str, tuple[str, str]] = field(default_factory=dict)

    def notify(self, endpoints_changed: bool) -> None:
        if endpoints_changed:
            self._has_endpoints = True
        if self._has_endpoints:
            self._wake.set()

    async def run(self) -> None:
        """For the life of the process."""
        stop_listening = events.listen(self.notify)
        last_poll = 0.0
        failing = False
        try:
            while True:
                started = time.monotonic()
                polling = started - last_poll >= self.poll_seconds
                if polling:
                    last_poll = time.monotonic()
                try:
                    await self.cycle(poll=polling)
                except Exception as error:  # the loop lives as long as the process
                    if not failing:
                        self._report_failure(error)
                    failing = True
                    await asyncio.sleep(self.poll_seconds)
                else:
                    if failing:
                        logger.info("webhook deliveries resumed")
                    failing = False
                await asyncio.sleep(max(0.0, started + MIN_CYCLE_SECONDS - time.monotonic()))
                if not self._wake.is_set():
                    wait = max(0.0, last_poll + self.poll_seconds - time.monotonic())
                    try:
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                self._wake.clear()
        finally:
            stop_listening()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _report_failure(self, error: Exception) -> None:
        """Once per outage, not once per cycle: a service started before its database or its
        migrations would otherwise log the same thing every second."""
        if isinstance(error, DatabaseUnavailable | SQLAlchemyError | OSError):
            logger.warning(
                "webhook deliveries paused, the database cannot answer (%s); trying again "
                "every %g s",
                self.db.reason(error),
                self.poll_seconds,
            )
        else:
            logger.error(
                "webhook deliveries paused by an unexpected error; trying again every %g s",
                self.poll_seconds,
                exc_info=error,
            )

    async def cycle(self, *, poll: bool = True) -> int:
        """Hand out new events and send what is due; how many requests were started."""
        if poll:
            self._has_endpoints = await self.db.read_one(webhooks.any_enabled)
            await self._report_lag()
        if not self._has_endpoints:
            return 0
        batches = await self.db.write(self._claim)
        for endpoint_id, batch in batches.items():
            self._sending.add(endpoint_id)
            task = asyncio.create_task(self._deliver(endpoint_id, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return sum(len(batch) for batch in batches.values())

    def _claim(self, connection: Connection) -> dict[str, list[Claimed]]:
        # First: read after this transaction has written (and so has an id), the horizon
        # would hold back every transaction that began after it.
        horizon = event_rows.horizon(connection)
        now = utcnow()
        until = now + timedelta(seconds=2 * self.timeout_seconds + 1)
        batches: dict[str, list[Claimed]] = {}
        room: dict[str, int] = {}
        for endpoint in webhooks.enabled_endpoints(connection):
            self._secrets[endpoint.id] = (endpoint.url, endpoint.secret)
            if endpoint.id in self._sending:
                continue
            # Deliveries already due (retries, a backlog) go first; new events fill the rest.
            batch = webhooks.claim_due(
                connection, endpoint.id, now=now, until=until, limit=BATCH_PER_ENDPOINT
            )
            if batch:
                batches[endpoint.id] = batch
            room[endpoint.id] = BATCH_PER_ENDPOINT - len(batch)
        for endpoint_id, fresh in fan_out(
            connection, horizon=horizon, batch=FAN_OUT_BATCH, claim=room, until=until
        ).items():
            batches.setdefault(endpoint_id, []).extend(fresh)
        return batches

    async def _deliver(self, endpoint_id: str, batch: list[Claimed]) -> None:
        url, secret = self._secrets[endpoint_id]
        under_way = asyncio.Semaphore(SENDS_PER_ENDPOINT)

        async def send(delivery: Claimed) -> Outcome:
            async with under_way:
                started = time.perf_counter()
                try:
                    return await self.sender.send(
                        url=url,
                        secret=secret,
                        event_id=delivery.event_id,
                        payload=delivery.payload,
                    )
                except Exception as error:  # a failed attempt like any other
                    logger.warning(
                        "webhook sender failed on delivery %d", delivery.id, exc_info=error
                    )
                    return Outcome(
                        None,
                        f"{type(error).__name__}: {error}"[:200],
                        (time.perf_counter() - started) * 1000,
                    )

        try:
            outcomes = await asyncio.gather(*(send(delivery) for delivery in batch))
            results = list(zip(batch, outcomes, strict=True))
            recorded = await self.db.write(
                lambda connection: record_outcomes(
                    connection,
                    results,
                    now=utcnow(),
                    retry_base_seconds=self.retry_base_seconds,
                    rng=self.rng,
                )
            )
            for result in recorded:
                if result is not None:
                    metrics.count_delivery(result)
        except (DatabaseUnavailable, SQLAlchemyError) as error:
            # The claims run out and the deliveries are sent again, by this process or another.
            logger.warning("could not record webhook deliveries (%s)", self.db.reason(error))
        except Exception:
            logger.exception("could not record webhook deliveries")
        finally:
            self._sending.discard(endpoint_id)
            self._wake.set()

    async def _report_lag(self) -> None:
        def query(connection: Connection) -> tuple[list[str], dict[str, datetime]]:
            return webhooks.enabled_ids(connection), webhooks.oldest_pending(connection)

        enabled, oldest = await self.db.read(query)
        now = utcnow()
        metrics.set_outbox_lag(
            {
                endpoint: (now - oldest[endpoint]).total_seconds() if endpoint in oldest else 0.0
                for endpoint in enabled
            }
        )


def fan_out(
    connection: Connection,
    *,
    horizon: int | None,
    batch: int,
    claim: Mapping[str, int],
    until: datetime,
) -> dict[str, list[Claimed]]:
    """Turn the feed's new events (below `horizon`, read earlier in the transaction) into
    deliveries, for every endpoint no other process is serving right now. The first
    `claim[endpoint id]` new deliveries of an endpoint are made already claimed until `until`
    (as `claim_due` would) and returned, for the caller to send at once: a fresh event costs
    no second statement to claim it."""
    now = utcnow()
    claimed: dict[str, list[Claimed]] = {}
    for endpoint in webhooks.lock_enabled(connection):
        position = (endpoint.cursor_txid, endpoint.cursor_id)
        new = event_rows.after(connection, position, horizon=horizon, limit=batch)
        if not new:
            continue
        wanted = json.loads(endpoint.events)
        snapshot = endpoint.cursor_snapshot
        rows = [
            webhooks.new_delivery(
                endpoint.id,
                events.event_id(event.txid, event.id),
                events.envelope_json(event),
                event.occurred_at,
                now=now,
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


async def purge_outbox(db: Database, *, retention: timedelta, every: timedelta) -> None:
    """Runs for the life of the process: events and settled deliveries past their retention
    go. Every worker may run it; deleting twice is harmless."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            purged = await events.purge_events(db, retention=retention)
            cutoff = utcnow() - retention
            settled = await db.write(partial(webhooks.purge_settled, cutoff=cutoff, batch=10_000))
        except (DatabaseUnavailable, SQLAlchemyError) as error:
            logger.warning("could not purge old events (%s)", db.reason(error))
        except Exception:
            logger.exception("could not purge old events")
        else:
            if purged or settled:
                logger.info("purged %d old events and %d settled deliveries", purged, settled)
