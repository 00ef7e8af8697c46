"""The delivery loop of one process: events become deliveries, deliveries become requests.

Each cycle, in one unit of work, claims a batch of due deliveries for each endpoint this
process is not already sending to, then hands the feed's new events to every endpoint that no
other process is serving (its row locked with SKIP LOCKED on PostgreSQL, the writer's lock on
SQLite), the first of them claimed at once to fill those batches. Each endpoint's batch is
sent concurrently in a task of its own and its outcomes recorded together in one unit of
work, so a slow or dead endpoint only ever holds up its own batch. A claim pushes the
delivery's due time past the attempt's deadline: if the process dies while sending, another
process sends it again then (at least once; the receiver dedupes on `webhook-id`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from app.clients.webhooks import Outcome, WebhookSender
from app.core import metrics
from app.core.database import Database
from app.core.errors import DatabaseUnavailable
from app.models.base import utcnow
from app.repositories import webhooks
from app.repositories.webhooks import Claimed
from app.services import events
from app.services.webhooks import fan_out, record_outcomes

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
        try:
            while True:
                started = time.monotonic()
                polling = started - last_poll >= self.poll_seconds
                if polling:
                    last_poll = time.monotonic()
                try:
                    await self.cycle(poll=polling)
                except (DatabaseUnavailable, SQLAlchemyError, OSError):
                    logger.warning("webhook delivery cycle failed; trying again", exc_info=True)
                    await asyncio.sleep(self.poll_seconds)
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
            connection, batch=FAN_OUT_BATCH, claim=room, until=until
        ).items():
            batches.setdefault(endpoint_id, []).extend(fresh)
        return batches

    async def _deliver(self, endpoint_id: str, batch: list[Claimed]) -> None:
        url, secret = self._secrets[endpoint_id]
        under_way = asyncio.Semaphore(SENDS_PER_ENDPOINT)

        async def send(delivery: Claimed) -> Outcome:
            async with under_way:
                return await self.sender.send(
                    url=url, secret=secret, event_id=delivery.event_id, payload=delivery.payload
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
        except (DatabaseUnavailable, SQLAlchemyError):
            # The claims run out and the deliveries are sent again, by this process or another.
            logger.warning("could not record webhook deliveries", exc_info=True)
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


async def purge_outbox(db: Database, *, retention: timedelta, every: timedelta) -> None:
    """Runs for the life of the process: events and settled deliveries past their retention
    go. Every worker may run it; deleting twice is harmless."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            purged = await events.purge_events(db, retention=retention)
            cutoff = utcnow() - retention
            settled = await db.write(partial(webhooks.purge_settled, cutoff=cutoff, batch=10_000))
        except (DatabaseUnavailable, SQLAlchemyError):
            logger.warning("could not purge old events", exc_info=True)
        else:
            if purged or settled:
                logger.info("purged %d old events and %d settled deliveries", purged, settled)
