"""Buyers are never failed for a neighbour's sake: slow, misconfigured or lying catalogs.

Every test runs the whole app against the real fake products service of devtools/fake_products.py
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import time

import httpx
import pytest

from app.cli.check import settings_summary
from app.clients.products.payload import MAX_PRODUCT_BYTES, MAX_PRODUCT_DEPTH
from devtools.fake_products import FakeProductsServer, IdStyle
from tests.support.factories import ledger_sum, make_stock, quantity_of, snapshot
from tests.support.orders import order
from tests.support.problems import assert_problem
from tests.support.products import (
    PRODUCTS_KEY,
    SLOW_SECONDS,
    assert_unavailable,
    product_lookups,
    settings_for,
)
from tests.support.service import running

# A healthy catalog that takes its time, and fewer connections than buyers, so that look-ups
# queue for connections far longer than one attempt may take.
HEALTHY_BUT_SLOW_SECONDS = 0.2
SMALL_POOL = 4
ATTEMPT_SECONDS = 0.5
BURST_PRODUCTS = 40
BUYERS_PER_PRODUCT = 2

# Upper bound on how long the tests below wait for a condition before failing.
DEADLINE_SECONDS = 10.0


async def test_a_slow_but_healthy_catalog_under_a_burst_fails_no_buyer(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    product_ids = [f"p{n}" for n in range(BURST_PRODUCTS)]
    fake_products.catalog.update({pid: {"name": pid, "price": 1} for pid in product_ids})
    fake_products.be_slow(HEALTHY_BUT_SLOW_SECONDS)
    settings = settings_for(
        database_url,
        fake_products.url,
        products_api_key=None,
        products_timeout_seconds=ATTEMPT_SECONDS,
        products_max_connections=SMALL_POOL,
        products_circuit_failures=1,
    )
    async with running(settings) as service:
        for product_id in product_ids:
            await make_stock(service.db, product_id, BUYERS_PER_PRODUCT)
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                service.http.post("/inventory/purchase", json=order((pid, 1)))
                for pid in product_ids
                for _ in range(BUYERS_PER_PRODUCT)
            )
        )
        waited = time.monotonic() - started
        for product_id in product_ids:
            assert await quantity_of(service.db, product_id) == 0
            assert await ledger_sum(service.db, product_id) == 0

    assert sorted({answer.status_code for answer in answers}) == [201], [
        answer.text for answer in answers if answer.status_code != 201
    ]
    # They queued: the burst took longer than one attempt may, yet none failed, and the
    # catalog never saw more requests at once than the pool has connections.
    assert waited > ATTEMPT_SECONDS
    assert fake_products.most_in_flight <= SMALL_POOL


async def test_ids_the_catalog_rejects_never_open_the_circuit(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    fake_products.read_ids("integer")
    settings = settings_for(database_url, fake_products.url, products_circuit_failures=2)
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings) as service:
        await make_stock(service.db, "1", 5)
        refused = [
            await service.http.post("/inventory/purchase", json=order(("abc", 1))) for _ in range(5)
        ]
        bought = await service.http.post("/inventory/purchase", json=order(("1", 1)))

    for answer in refused:
        body = assert_problem(answer, 422, "unknown-product")
        assert body["product_ids"] == ["abc"]
    assert bought.status_code == 201, bought.text


@pytest.mark.parametrize("status", [405, 409, 414, 418, 301, 201])
async def test_odd_answers_about_one_id_are_503_but_never_open_the_circuit(
    database_url: str, fake_products: FakeProductsServer, status: int
) -> None:
    settings = settings_for(database_url, fake_products.url, products_circuit_failures=2)
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings) as service:
        await make_stock(service.db, "1", 5)
        fake_products.fail_with(status)
        refused = [
            await service.http.post("/inventory/purchase", json=order(("1", 1))) for _ in range(4)
        ]
        fake_products.status = None
        bought = await service.http.post("/inventory/purchase", json=order(("1", 1)))

    for answer in refused:
        assert_unavailable(answer)
    assert bought.status_code == 201, bought.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1.5, "name": "Mug"}',
        b'{"id": true, "name": "Mug"}',
        b'{"id": {"a": 1}, "name": "Mug"}',
        b'{"id": null, "name": "Mug"}',
        b'{"id": "", "name": "Mug"}',
        b'{"data": {"id": 1.0, "type": "products", "attributes": {"name": "Mug"}}}',
    ],
)
async def test_a_200_whose_id_is_no_id_is_never_a_sale(
    database_url: str, fake_products: FakeProductsServer, body: bytes
) -> None:
    settings = settings_for(database_url, fake_products.url, products_circuit_failures=1)
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings) as service:
        await make_stock(service.db, "1", 5)
        fake_products.answer_raw(body, {"Content-Type": "application/json"})
        refused = [
            await service.http.post("/inventory/purchase", json=order(("1", 1))) for _ in range(2)
        ]
        fake_products.raw = None
        bought = await service.http.post("/inventory/purchase", json=order(("1", 1)))
        left = await quantity_of(service.db, "1")

    for answer in refused:
        assert_unavailable(answer)
    assert bought.status_code == 201, bought.text
    assert left == 4


@pytest.mark.parametrize(
    ("style", "catalog_id", "asked", "answered"),
    [
        ("integer", "1", "01", "1"),
        (
            "lowercase",
            "0b5c6d1e-8f0a-4b1c-9d2e-3f4a5b6c7d8e",
            "0B5C6D1E-8F0A-4B1C-9D2E-3F4A5B6C7D8E",
            "0b5c6d1e-8f0a-4b1c-9d2e-3f4a5b6c7d8e",
        ),
    ],
)
async def test_a_product_answered_under_another_id_gets_no_second_stock_level(
    database_url: str,
    fake_products: FakeProductsServer,
    style: IdStyle,
    catalog_id: str,
    asked: str,
    answered: str,
) -> None:
    fake_products.catalog[catalog_id] = {"name": "Mug", "price": 9.5}
    fake_products.read_ids(style)
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings_for(database_url, fake_products.url)) as service:
        twin = await service.http.put(f"/inventory/{asked}", json={"quantity": 5})
        bought = await service.http.post("/inventory/purchase", json=order((asked, 1)))
        real = await service.http.put(f"/inventory/{catalog_id}", json={"quantity": 5})
        assert await quantity_of(service.db, asked) is None

    body = assert_problem(twin, 422, "unknown-product")
    assert body["product_ids"] == [asked]
    assert repr(answered) in str(body["detail"])
    assert assert_problem(bought, 422, "unknown-product")["product_ids"] == [asked]
    assert real.status_code == 201, real.text
    assert real.json()["product"]["id"] == catalog_id


async def test_a_catalog_at_another_path_is_reached_through_the_path_template(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    fake_products.serve_at("/api/productos/")
    fake_products.require_api_key(PRODUCTS_KEY)
    settings = settings_for(database_url, fake_products.url, products_path="/api/productos/{id}")
    async with running(settings) as service:
        created = await service.http.put("/inventory/42", json={"quantity": 3})

    assert created.status_code == 201, created.text
    assert created.json()["product"]["name"] == "Towel"
    assert [r.path for r in fake_products.requests] == ["/api/productos/42"]


async def test_a_catalog_refusing_our_key_is_503_logged_once_and_shown_in_ready(
    database_url: str, fake_products: FakeProductsServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_products.require_api_key("the-key-it-really-wants")
    async with running(settings_for(database_url, fake_products.url)) as service:
        with caplog.at_level(logging.ERROR, logger="app.clients.products"):
            first = await service.http.put("/inventory/1", json={"quantity": 3})
            second = await service.http.put("/inventory/2", json={"quantity": 3})
        ready = await service.http.get("/ready")
        assert await quantity_of(service.db, "1") is None

    assert_unavailable(first)
    assert_unavailable(second)
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1
    assert "PRODUCTS_API_KEY" in loud[0].getMessage()
    assert ready.status_code == 200
    assert ready.json()["checks"]["products"] == "unauthorized"


async def test_ready_shows_a_refused_key_even_when_the_catalogs_health_is_public(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    fake_products.require_api_key("the-key-it-really-wants", public_health=True)
    async with running(settings_for(database_url, fake_products.url)) as service:
        refused = await service.http.put("/inventory/1", json={"quantity": 3})
        ready = await service.http.get("/ready")

    assert_unavailable(refused)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "products": "unauthorized"}


def _nested(depth: int) -> bytes:
    return b'{"id": "1", "x": ' + b"[" * depth + b"]" * depth + b"}"


LIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "lone-surrogate": (b'{"id": "1", "name": "\\ud800"}', {}),
    "nested-3000": (_nested(3000), {}),
    "nested-past-the-cap": (_nested(MAX_PRODUCT_DEPTH + 1), {}),
    "nan": (b'{"id": "1", "price": NaN}', {}),
    "overflowing-number": (b'{"id": "1", "price": 1e400}', {}),
    "utf-8-bom": (b'\xef\xbb\xbf{"id": "1"}', {}),
    "huge": (b'{"id": "1", "name": "' + b"a" * MAX_PRODUCT_BYTES + b'"}', {}),
    "gzip-bomb": (
        gzip.compress(b'{"id": "1", "name": "' + b"a" * (8 * MAX_PRODUCT_BYTES) + b'"}'),
        {"Content-Encoding": "gzip"},
    ),
}


@pytest.mark.parametrize("lie", list(LIES))
async def test_a_lying_catalog_cannot_make_us_fail_after_committing(
    database_url: str, fake_products: FakeProductsServer, lie: str
) -> None:
    body, headers = LIES[lie]
    fake_products.answer_raw(body, headers)
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings_for(database_url, fake_products.url)) as service:
        await make_stock(service.db, "2", 5)
        before = await snapshot(service.db)
        created = await service.http.put("/inventory/1", json={"quantity": 3})
        bought = await service.http.post("/inventory/purchase", json=order(("2", 1)))
        got = await service.http.get("/inventory/2")
        assert await snapshot(service.db) == before

    assert_unavailable(created)
    assert_unavailable(bought)
    assert got.status_code == 200, got.text
    assert got.json()["product"] is None
    # Refused as a final answer, not retried: one request per look-up.
    assert len(product_lookups(fake_products)) == 3


async def test_a_small_product_nested_within_the_cap_is_taken(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    fake_products.answer_raw(_nested(MAX_PRODUCT_DEPTH - 1))
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings_for(database_url, fake_products.url)) as service:
        created = await service.http.put("/inventory/1", json={"quantity": 3})

    assert created.status_code == 201, created.text
    assert created.json()["product"]["id"] == "1"


async def test_credentials_in_the_products_url_are_sent_but_never_shown(
    database_url: str, fake_products: FakeProductsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "s3cr3t-pa55"
    url = fake_products.url.replace("http://", f"http://shop:{secret}@")
    settings = settings_for(database_url, url, products_api_key=None, log_level="DEBUG")
    async with running(settings) as service:
        created = await service.http.put("/inventory/1", json={"quantity": 3})

    assert created.status_code == 201, created.text
    expected = httpx.BasicAuth("shop", secret)._auth_header
    assert fake_products.requests[0].headers["authorization"] == expected
    logged = capsys.readouterr()
    assert "HTTP Request" in logged.out  # httpx did log the request, without the password
    assert secret not in logged.out + logged.err
    shown = dict(settings_summary(settings))["products_service_url"]
    assert secret not in shown
    assert shown.startswith("http://shop:***@")


async def test_past_the_limit_requests_are_shed_but_probes_still_answer(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    fake_products.be_slow(SLOW_SECONDS)
    settings = settings_for(
        database_url,
        fake_products.url,
        products_api_key=None,
        products_retries=0,
        max_requests_in_progress=2,
    )
    async with running(settings) as service:
        for product_id in ("1", "2"):
            await make_stock(service.db, product_id, 5)
        shed_before = shed_count(await service.http.get("/metrics"))
        # Two products: one look-up each (look-ups of one product would be shared).
        held = [asyncio.create_task(service.http.get(f"/inventory/{pid}")) for pid in ("1", "2")]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(fake_products.requests) < len(held):
            assert time.monotonic() < deadline, "the held requests never reached the catalog"
            await asyncio.sleep(0.01)
        shed = await service.http.get("/inventory/1")
        probes = [await service.http.get(path) for path in ("/health", "/ready", "/metrics")]
        fake_products.be_slow(0)
        for request in held:
            request.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        after = await service.http.get("/inventory/1")

    assert_problem(shed, 503, "overloaded")
    assert shed.headers["Retry-After"] == "1"
    assert [probe.status_code for probe in probes] == [200, 200, 200]
    assert after.status_code == 200
    assert shed_count(probes[2]) == shed_before + 1


def shed_count(metrics: httpx.Response) -> float:
    match = re.search(r"^inventory_requests_shed_total (\S+)$", metrics.text, re.MULTILINE)
    assert match is not None, metrics.text
    return float(match.group(1))
