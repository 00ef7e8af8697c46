"""An error inside the sender, of whatever kind, is a failed attempt like any other: recorded
in the deliveries log, retried with backoff, and counted toward disabling the endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.clients.webhooks import Outcome, WebhookSender
from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from app.models import WebhookEndpoint
from app.models.base import utcnow
from app.services.deliveries import DISABLE_AFTER
from tests.support.receiver import TIMEOUT, receiver_settings, receiving, subscribe
from tests.support.service import API_KEY, client_for


class BrokenSender(WebhookSender):
    """Raises an error the sender itself never expects on its first `failures` attempts
    (on every attempt when None), then sends for real."""

    def __init__(self, failures: int | None) -> None:
        super().__init__(timeout_seconds=TIMEOUT, allowed_hosts=("127.0.0.1",))
        self.failures = failures
        self.attempts = 0

    async def send(self, *, url: str, secret: str, event_id: str, payload: str) -> Outcome:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise LookupError("the sender broke")
        return await super().send(url=url, secret=secret, event_id=event_id, payload=payload)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return receiver_settings(database_url)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, BrokenSender]]:
    """The service, its sender broken for the test to set how; only after the first two
    attempts by default."""
    sender = BrokenSender(failures=2)
    application = create_app(settings, webhook_sender=sender)
    async with application.router.lifespan_context(application):
        yield application, sender


@pytest.fixture
async def client(running: tuple[FastAPI, BrokenSender]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(running[0], **{"X-API-KEY": API_KEY}) as http:
        yield http


async def test_an_error_inside_the_sender_is_a_recorded_attempt_that_is_retried(
    client: httpx.AsyncClient,
) -> None:
    async with receiving() as receiver:
        endpoint = await subscribe(client, receiver, ["stock.changed"])
        await client.put("/inventory/7", json={"quantity": 1})
        await receiver.wait_for(1)
    log = (await client.get(f"/webhooks/{endpoint['id']}/deliveries")).json()["items"]
    assert [attempt["status_code"] for attempt in log] == [204, None, None]
    assert [attempt["error"] for attempt in log[1:]] == ["LookupError: the sender broke"] * 2
    assert log[0]["next_attempt_at"] is None
    assert all(attempt["next_attempt_at"] is not None for attempt in log[1:])
    assert len({attempt["event_id"] for attempt in log}) == 1


async def test_an_endpoint_whose_sender_always_fails_is_disabled_like_any_failing_one(
    client: httpx.AsyncClient, running: tuple[FastAPI, BrokenSender]
) -> None:
    app, sender = running
    sender.failures = None
    db: Database = app.state.database
    async with receiving() as receiver:
        endpoint = await subscribe(client, receiver)
    # Failing for five days already: the next failed attempt disables it.
    since = utcnow() - DISABLE_AFTER
    await db.write(
        lambda c: c.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint["id"])
            .values(failing_since=since)
        )
    )
    path = f"/webhooks/{endpoint['id']}"
    assert (await client.post(f"{path}/test")).status_code == 202
    async with asyncio.timeout(10):
        while (shown := (await client.get(path)).json())["enabled"]:  # noqa: ASYNC110 - a deadline
            await asyncio.sleep(0.02)
    assert shown["disabled_reason"].startswith("every delivery failed since")
    [attempt] = (await client.get(f"{path}/deliveries")).json()["items"]
    assert attempt["error"] == "LookupError: the sender broke"
