"""Webhooks: subscriptions, signed deliveries to a real receiver, retries, isolation, SSRF."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from app.core.config import Settings
from app.core.database import Database
from tests.support.addresses import INVALID_URLS, NOT_GLOBAL, url_of
from tests.support.feed import caught_up
from tests.support.receiver import (
    TIMEOUT,
    Receiver,
    receiver_settings,
    receiving,
    settled,
    subscribe,
)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return receiver_settings(database_url)


async def buy(client: httpx.AsyncClient, product_id: str = "42", quantity: int = 1) -> None:
    response = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": product_id, "quantity": quantity}]}
    )
    assert response.status_code == 201, response.text


async def test_subscribing_shows_the_secret_once(client: httpx.AsyncClient) -> None:
    async with receiving() as receiver:
        created = await subscribe(client, receiver, ["stock.low", "purchase.completed"])
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["stock.low", "purchase.completed"]
    endpoint = f"/webhooks/{created['id']}"
    shown = (await client.get(endpoint)).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    listed = (await client.get("/webhooks")).json()
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]

    patched = await client.patch(endpoint, json={"enabled": False, "events": ["stock.changed"]})
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["events"]) == (False, ["stock.changed"])
    assert (await client.delete(endpoint)).status_code == 204
    assert (await client.get(endpoint)).status_code == 404
    assert (await client.delete(endpoint)).status_code == 404
    assert (await client.patch(endpoint, json={"enabled": True})).status_code == 404
    assert (await client.post(f"{endpoint}/test")).status_code == 404
    assert (await client.get(f"{endpoint}/deliveries")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://127.0.0.1/x", "events": ["*"]},
        {"url": "not a url", "events": ["*"]},
        {"url": "http://127.0.0.1/x", "events": []},
        {"url": "http://127.0.0.1/x", "events": ["stock.nope"]},
        {"url": "http://127.0.0.1/x"},
    ],
)
async def test_a_bad_subscription_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"


async def test_events_are_delivered_signed_with_the_feed_ids(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with receiving() as everything, receiving() as low_only:
        await subscribe(client, everything)
        await subscribe(client, low_only, ["stock.low"])
        await client.put("/inventory/42", json={"quantity": 3, "low_stock_threshold": 1})
        await buy(client, quantity=2)
        await caught_up(db)
        feed = (await client.get("/events")).json()["items"]
        await everything.wait_for(len(feed))
        await low_only.wait_for(1)
    assert sorted(everything.event_ids) == [event["id"] for event in feed]
    assert sorted(everything.events(), key=lambda e: e["id"]) == feed
    assert [e["type"] for e in low_only.events()] == ["stock.low"]
    assert everything.bad_signatures == low_only.bad_signatures == 0
    headers = everything.delivered[0].headers
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")


async def test_an_endpoint_receives_only_what_was_committed_after_it_subscribed(
    client: httpx.AsyncClient, db: Database
) -> None:
    await client.put("/inventory/1", json={"quantity": 5})
    async with receiving() as receiver:
        endpoint = await subscribe(client, receiver)
        await client.put("/inventory/1", json={"quantity": 6})
        await receiver.wait_for(1)
        await settled(db, endpoint)
    assert [e["data"]["quantity_after"] for e in receiver.events()] == [6]


async def test_a_failed_delivery_is_retried_and_logged(client: httpx.AsyncClient) -> None:
    # 500, 500, then a delay beyond the timeout, then success.
    answers: dict[int, int | float] = {0: 500, 1: 503, 2: TIMEOUT + 0.5}
    async with receiving(Receiver(answer=lambda n: answers.get(n, 204))) as receiver:
        endpoint = await subscribe(client, receiver, ["stock.changed"])
        await client.put("/inventory/7", json={"quantity": 1})
        await receiver.wait_for(1)
    log = (await client.get(f"/webhooks/{endpoint['id']}/deliveries")).json()["items"]
    assert [attempt["status_code"] for attempt in log] == [204, None, 503, 500]
    assert "no answer within" in log[1]["error"]
    assert log[0]["next_attempt_at"] is None
    assert all(attempt["next_attempt_at"] is not None for attempt in log[1:])
    assert len({attempt["event_id"] for attempt in log}) == 1
    # Each retry waited at least about the doubled base delay.
    retried = [attempt["attempted_at"] for attempt in reversed(log)]
    assert retried == sorted(retried)


async def test_a_dead_endpoint_does_not_delay_a_healthy_one(
    client: httpx.AsyncClient, db: Database
) -> None:
    hanging = Receiver(answer=lambda _n: 30.0)
    async with receiving(hanging) as dead, receiving() as healthy:
        await subscribe(client, dead)
        await subscribe(client, healthy)
        await client.put("/inventory/42", json={"quantity": 100})
        started = time.monotonic()
        for _ in range(20):
            await buy(client)
        await caught_up(db)
        expected = len((await client.get("/events", params={"limit": 500})).json()["items"])
        await healthy.wait_for(expected)
        # Every event reached the healthy endpoint before one attempt at the dead one could
        # even time out.
        assert time.monotonic() - started < TIMEOUT * 2
        assert dead.delivered == []


async def test_the_test_event_reaches_only_its_endpoint(client: httpx.AsyncClient) -> None:
    async with receiving() as receiver, receiving() as other:
        endpoint = await subscribe(client, receiver)
        await subscribe(client, other)
        response = await client.post(f"/webhooks/{endpoint['id']}/test")
        assert response.status_code == 202
        await receiver.wait_for(1)
    assert receiver.events() == [response.json()]
    assert response.json()["type"] == "webhook.test"
    assert other.delivered == []
    assert (await client.get("/events")).json()["items"] == []


async def test_a_disabled_endpoint_gets_nothing_until_enabled(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with receiving() as receiver:
        endpoint = await subscribe(client, receiver)
        await client.patch(f"/webhooks/{endpoint['id']}", json={"enabled": False})
        await client.put("/inventory/1", json={"quantity": 1})
        await client.patch(f"/webhooks/{endpoint['id']}", json={"enabled": True})
        await client.put("/inventory/1", json={"quantity": 2})
        await receiver.wait_for(1)
        await settled(db, endpoint)
    assert [e["data"]["quantity_after"] for e in receiver.events()] == [2]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9/x",  # a name that resolves to loopback
        "http://127.0.0.2/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://172.16.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
    ],
)
async def test_internal_addresses_are_refused(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post("/webhooks", json={"url": url, "events": ["*"]})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "url"


@pytest.mark.parametrize("url", INVALID_URLS)
async def test_a_url_without_a_valid_host_or_port_is_422(
    client: httpx.AsyncClient, url: str
) -> None:
    response = await client.post("/webhooks", json={"url": url, "events": ["*"]})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["field"] == "url"


@pytest.mark.parametrize("address", list(NOT_GLOBAL.values()), ids=list(NOT_GLOBAL))
async def test_every_refused_range_is_422_at_registration(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post("/webhooks", json={"url": url_of(address), "events": ["*"]})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["field"] == "url"


async def test_metrics_count_events_and_deliveries(client: httpx.AsyncClient) -> None:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    events_before = sample("inventory_events_total", {"type": "stock.changed"})
    delivered_before = sample("inventory_webhook_deliveries_total", {"outcome": "delivered"})
    async with receiving() as receiver:
        endpoint = await subscribe(client, receiver)
        await client.put("/inventory/1", json={"quantity": 1})
        await receiver.wait_for(2)  # stock.changed and stock.restocked
    assert sample("inventory_events_total", {"type": "stock.changed"}) == events_before + 1
    assert sample("inventory_webhook_deliveries_total", {"outcome": "delivered"}) >= (
        delivered_before + 2
    )
    text = (await client.get("/metrics")).text
    assert "inventory_webhook_outbox_lag_seconds" in text or endpoint["id"] not in text
