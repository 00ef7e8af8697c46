"""Two processes, a receiver that is down, SIGKILL right after committed purchases, a restart:
every event still reaches the receiver, each from one process only."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.core.database import Database
from app.services import events
from devtools.servers import free_port, kill_service, start_service, stop_service
from tests.support.factories import make_stock
from tests.support.receiver import Receiver, receiving

pytestmark = pytest.mark.slow

ENV = {
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
}


async def _buy(http: httpx.AsyncClient, n: int) -> None:
    items = [{"product_id": f"p{n % 3}", "quantity": 1}]
    response = await http.post("/inventory/purchase", json={"items": items})
    assert response.status_code == 201, response.text


async def _feed_ids(db: Database) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while page := (await events.list_events(db, after=after, type_=None, limit=500)).items:
        ids += [event.id for event in page]
        after = page[-1].id
    return ids


async def test_every_event_is_delivered_once_after_a_crash(database_url: str) -> None:
    db = Database(database_url)
    receiver_port = free_port()
    receiver = Receiver()
    try:
        for n in range(3):
            await make_stock(db, f"p{n}", 500)
        before_subscribing = set(await _feed_ids(db))
        server, base_url = start_service(database_url, workers=2, env=ENV)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                url = f"http://127.0.0.1:{receiver_port}/hook"
                created = await http.post("/webhooks", json={"url": url, "events": ["*"]})
                assert created.status_code == 201, created.text
                receiver.secrets.append(created.json()["secret"])
                await asyncio.gather(*(_buy(http, n) for n in range(30)))
        finally:
            kill_service(server)  # the receiver never answered: every delivery is pending

        async with receiving(receiver, port=receiver_port):
            # In a thread: the receiver shares this event loop and must answer meanwhile.
            server, base_url = await asyncio.to_thread(
                start_service, database_url, workers=2, env=ENV
            )
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                    await asyncio.gather(*(_buy(http, n) for n in range(30, 60)))
                expected = [i for i in await _feed_ids(db) if i not in before_subscribing]
                await receiver.wait_for(len(expected), seconds=60)
            finally:
                stop_service(server)
    finally:
        await db.dispose()
    # 60 purchases: a stock.changed and a purchase.completed each.
    assert len(expected) == 120
    assert sorted(set(receiver.event_ids)) == expected
    assert receiver.bad_signatures == 0
    # Each event went from one process only: no duplicates without a crash mid-send.
    assert len(receiver.event_ids) == len(expected)
