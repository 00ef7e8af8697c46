"""The inventory service talking to a real products service of our own.

The whole app runs with its lifespan (engine, pooled products client, catalog) and is
driven over ASGI; the products service is devtools/fake_products.py, a real HTTP server on
127.0.0.1 whose behaviour each test switches. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from app.clients.products import lookup_deadline_seconds
from app.core.config import Settings
from devtools.fake_products import BodyShape, FakeProductsServer, RecordedRequest
from tests.support.factories import ledger_sum, make_stock, quantity_of, snapshot
from tests.support.orders import order
from tests.support.problems import assert_problem
from tests.support.products import (
    PRODUCTS_KEY,
    READINESS_PROBE,
    SCHEDULING_MARGIN_SECONDS,
    SLOW_SECONDS,
    TIMEOUT_SECONDS,
    assert_unavailable,
    product_lookups,
    settings_for,
)
from tests.support.service import Inventory, running

SHORT_TIMEOUT_SECONDS = 0.2


def too_slow(database_url: str, fake: FakeProductsServer, **overrides: Any) -> Settings:
    """Settings for the service with the short timeout, and `fake` made slower than any."""
    fake.require_api_key(PRODUCTS_KEY)
    fake.be_slow(SLOW_SECONDS)
    return settings_for(
        database_url, fake.url, products_timeout_seconds=SHORT_TIMEOUT_SECONDS, **overrides
    )


def asked(fake: FakeProductsServer, product_id: str) -> list[RecordedRequest]:
    """The fake's look-ups of this product, in order."""
    return [request for request in fake.requests if request.path == f"/products/{product_id}"]


# --- the products service answers ---------------------------------------------------------


@pytest.mark.parametrize("shape", ["plain", "data", "jsonapi"])
async def test_each_body_shape_gives_the_flat_product_and_decimal_prices(
    inventory: Inventory, fake_products: FakeProductsServer, shape: BodyShape
) -> None:
    fake_products.serve_shape(shape)
    fake_products.catalog["taza"] = {"name": "Taza", "precio": 3.1}
    created = await inventory.http.put("/inventory/1", json={"quantity": 10})
    for product_id in ("42", "taza"):
        also = await inventory.http.put(f"/inventory/{product_id}", json={"quantity": 10})
        assert also.status_code == 201, also.text

    got = await inventory.http.get("/inventory/1")
    bought = await inventory.http.post(
        "/inventory/purchase", json=order(("1", 2), (42, 3), ("taza", 3), reference="o-1")
    )

    mug = {"id": "1", "name": "Mug", "price": 9.5}
    assert created.status_code == 201, created.text
    assert created.json()["product"] == mug
    assert got.status_code == 200
    assert got.json()["product"] == mug
    assert bought.status_code == 201, bought.text
    receipt = bought.json()
    assert [
        (line["product_id"], line["unit_price"], line["subtotal"], line["remaining"])
        for line in receipt["items"]
    ] == [
        ("1", "9.50", "19.00", 8),
        ("42", "12.90", "38.70", 7),  # 12.9 × 3 in floats is 38.699999…
        ("taza", "3.10", "9.30", 7),
    ]
    assert receipt["total"] == "67.00"
    stored = await inventory.http.get(bought.headers["Location"])
    assert stored.json() == receipt


async def test_a_product_without_a_usable_price_has_no_total(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    fake_products.catalog["gift"] = {"name": "Gift card"}
    # Too large, and too fine, to compute with exactly and to store: no price either.
    fake_products.catalog["huge"] = {"name": "Huge", "price": 1e300}
    fake_products.catalog["fine"] = {"name": "Fine", "price": "0." + "1" * 45}
    for product_id in ("gift", "huge", "fine", "1"):
        await make_stock(inventory.db, product_id, 3)

    response = await inventory.http.post(
        "/inventory/purchase", json=order(("gift", 1), ("huge", 1), ("fine", 2), ("1", 1))
    )

    assert response.status_code == 201, response.text
    assert [line["unit_price"] for line in response.json()["items"]] == [None, None, None, "9.50"]
    assert [line["subtotal"] for line in response.json()["items"]] == [None, None, None, "9.50"]
    assert response.json()["total"] is None


async def test_api_key_and_request_id_are_forwarded(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    await inventory.http.put(
        "/inventory/1", json={"quantity": 9}, headers={"X-Request-ID": "r-put"}
    )
    await make_stock(inventory.db, "2", 9)
    await inventory.http.get("/inventory/1", headers={"X-Request-ID": "r-get"})
    await inventory.http.post(
        "/inventory/purchase", json=order(("1", 1), ("2", 1)), headers={"X-Request-ID": "r-buy"}
    )

    seen = [
        (request.path, request.headers.get("x-request-id"), request.headers.get("x-api-key"))
        for request in product_lookups(fake_products)
    ]
    assert sorted(seen) == sorted(
        [
            ("/products/1", "r-put", PRODUCTS_KEY),
            ("/products/1", "r-get", PRODUCTS_KEY),
            ("/products/1", "r-buy", PRODUCTS_KEY),
            ("/products/2", "r-buy", PRODUCTS_KEY),
        ]
    )
    accept = fake_products.requests[0].headers["accept"]
    assert "application/json" in accept
    assert "application/vnd.api+json" in accept


async def test_without_a_products_key_no_key_is_sent(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    settings = settings_for(database_url, fake_products.url, products_api_key=None)
    async with running(settings) as service:
        response = await service.http.put("/inventory/42", json={"quantity": 1})

    assert response.status_code == 201, response.text
    # Above all, the caller's own inventory key does not travel on.
    assert "x-api-key" not in asked(fake_products, "42")[0].headers


async def test_a_request_without_an_id_forwards_the_one_it_was_given(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    response = await inventory.http.put("/inventory/42", json={"quantity": 1})

    assert asked(fake_products, "42")[0].headers["x-request-id"] == response.headers["X-Request-ID"]


async def test_put_on_an_existing_stock_level_does_not_ask_the_products_service(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    await make_stock(inventory.db, "42", 5)
    fake_products.fail_with(500)

    response = await inventory.http.put("/inventory/42", json={"quantity": 8})

    assert response.status_code == 200, response.text
    assert response.json()["quantity"] == 8
    assert response.json()["product"] is None  # nobody was asked
    assert product_lookups(fake_products) == []


async def test_ready_says_products_ok_when_the_service_answers(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    response = await inventory.http.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "products": "ok"}}
    assert [request.path for request in fake_products.requests] == [READINESS_PROBE]


# --- the products service says "no such product" ------------------------------------------


async def test_creating_a_stock_level_of_an_unknown_product_is_422(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    before = await snapshot(inventory.db)

    response = await inventory.http.put("/inventory/nope", json={"quantity": 5})

    body = assert_problem(response, 422, "unknown-product")
    assert body["product_ids"] == ["nope"]
    assert len(asked(fake_products, "nope")) == 1
    assert await snapshot(inventory.db) == before


async def test_purchase_with_unknown_products_is_422_naming_all_of_them(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    await make_stock(inventory.db, "1", 5)
    await make_stock(inventory.db, "nope-1", 5)  # stocked, but the catalog no longer knows it
    before = await snapshot(inventory.db)

    response = await inventory.http.post(
        "/inventory/purchase", json=order(("nope-1", 1), ("1", 1), (404404, 2))
    )

    body = assert_problem(response, 422, "unknown-product")
    assert body["product_ids"] == ["nope-1", "404404"]
    assert await snapshot(inventory.db) == before
    assert await quantity_of(inventory.db, "1") == 5


# --- the products service cannot answer ---------------------------------------------------

FAILURES: dict[str, Callable[[FakeProductsServer], None]] = {
    "500": lambda fake: fake.fail_with(500),
    "503-every-time": lambda fake: fake.fail_with(503),
    "not-json": lambda fake: fake.answer_not_json(),
    "slow": lambda fake: fake.be_slow(SLOW_SECONDS),
    "wrong-api-key": lambda fake: fake.require_api_key("a-key-we-do-not-have"),
    "closed-port": lambda fake: None,
}


@dataclass(frozen=True, slots=True)
class Broken:
    service: Inventory
    fake: FakeProductsServer
    mode: str

    def assert_asked(self, product_id: str, request_id: str) -> None:
        """The failure came from the products service, asked with this request's id."""
        if self.mode == "closed-port":
            return
        request_ids = [r.headers.get("x-request-id") for r in asked(self.fake, product_id)]
        assert request_id in request_ids, (product_id, request_ids)


@pytest.fixture(params=list(FAILURES))
async def broken(
    request: pytest.FixtureRequest,
    database_url: str,
    fake_products: FakeProductsServer,
    closed_port_url: str,
) -> AsyncIterator[Broken]:
    mode: str = request.param
    fake_products.require_api_key(PRODUCTS_KEY)
    FAILURES[mode](fake_products)
    url = closed_port_url if mode == "closed-port" else fake_products.url
    timeout = SHORT_TIMEOUT_SECONDS if mode == "slow" else TIMEOUT_SECONDS
    async with running(
        settings_for(database_url, url, products_timeout_seconds=timeout)
    ) as service:
        await make_stock(service.db, "1", 10)
        yield Broken(service, fake_products, mode)


async def test_writes_are_503_and_change_nothing_while_reads_go_on_without_product(
    broken: Broken,
) -> None:
    """One scenario per way of not answering: creating a stock level and buying fail with
    503 and Retry-After and leave stock and ledger as they were; reading still works."""
    http, db = broken.service.http, broken.service.db
    snap = await snapshot(db)

    created = await http.put(
        "/inventory/42", json={"quantity": 5}, headers={"X-Request-ID": "put-42"}
    )
    bought = await http.post(
        "/inventory/purchase", json=order(("1", 2)), headers={"X-Request-ID": "buy-1"}
    )
    got = await http.get("/inventory/1", headers={"X-Request-ID": "get-1"})

    assert_unavailable(created)
    broken.assert_asked("42", "put-42")
    assert_unavailable(bought)
    broken.assert_asked("1", "buy-1")
    # The products it could not answer for are named, in the detail and as data.
    for response, product_id in ((created, "42"), (bought, "1")):
        problem = response.json()
        assert problem["product_ids"] == [product_id]
        assert f"cannot answer for '{product_id}'" in problem["detail"]
        assert " of 1" not in problem["detail"]
    assert await snapshot(db) == snap
    assert await quantity_of(db, "42") is None
    assert await quantity_of(db, "1") == 10
    assert await ledger_sum(db, "1") == 10
    assert got.status_code == 200, got.text
    assert got.json()["quantity"] == 10
    assert got.json()["product"] is None
    broken.assert_asked("1", "get-1")


@pytest.mark.parametrize("broken", ["503-every-time"], indirect=True)
async def test_a_failed_purchase_can_be_retried_with_the_same_idempotency_key(
    broken: Broken,
) -> None:
    headers = {"Idempotency-Key": "buy-once"}
    failed = await broken.service.http.post(
        "/inventory/purchase", json=order(("1", 2)), headers=headers
    )
    broken.fake.reset()
    broken.fake.require_api_key(PRODUCTS_KEY)

    retried = await broken.service.http.post(
        "/inventory/purchase", json=order(("1", 2)), headers=headers
    )

    assert_unavailable(failed)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert await quantity_of(broken.service.db, "1") == 8


# --- retries, the circuit breaker, the latency bound ---------------------------------------


async def test_a_flaky_products_service_is_retried_until_it_answers(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    retries = inventory.settings.products_retries
    fake_products.fail_first(retries, status=503)
    created = await inventory.http.put("/inventory/1", json={"quantity": 10})
    fake_products.fail_first(retries, status=503)
    bought = await inventory.http.post("/inventory/purchase", json=order(("1", 2)))

    assert created.status_code == 201, created.text
    assert bought.status_code == 201, bought.text
    assert bought.json()["items"][0]["unit_price"] == "9.50"
    assert len(asked(fake_products, "1")) == 2 * (retries + 1)


async def test_retries_are_bounded(inventory: Inventory, fake_products: FakeProductsServer) -> None:
    retries = inventory.settings.products_retries
    fake_products.fail_first(retries + 1, status=503)

    response = await inventory.http.put("/inventory/1", json={"quantity": 10})

    assert_unavailable(response)
    assert len(asked(fake_products, "1")) == retries + 1


async def test_an_open_circuit_fails_fast_and_ready_stays_ready(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    settings = too_slow(
        database_url,
        fake_products,
        products_retries=0,
        products_circuit_failures=3,
        products_circuit_reset_seconds=30,
    )
    async with running(settings) as service:
        await make_stock(service.db, "1", 10)
        snap = await snapshot(service.db)
        for _ in range(settings.products_circuit_failures):
            started = time.monotonic()
            assert_unavailable(await service.http.post("/inventory/purchase", json=order(("1", 1))))

        refused = await service.http.post(
            "/inventory/purchase", json=order(("1", 1)), headers={"X-Request-ID": "while-open-1"}
        )
        waited = time.monotonic() - started
        created = await service.http.put(
            "/inventory/42", json={"quantity": 1}, headers={"X-Request-ID": "while-open-2"}
        )
        got = await service.http.get("/inventory/1", headers={"X-Request-ID": "while-open-3"})
        ready = await service.http.get("/ready")

        assert await snapshot(service.db) == snap

    retry_after = assert_unavailable(refused)
    reset = settings.products_circuit_reset_seconds
    assert reset - waited - 1 <= retry_after <= reset
    assert_unavailable(created)
    assert got.status_code == 200
    assert got.json()["product"] is None
    # Nothing went to the products service while the circuit was open (a look-up that timed
    # out earlier may still reach it late, on a busy machine: those carry other request ids).
    asked_while_open = [
        r for r in product_lookups(fake_products) if r.headers["x-request-id"].startswith("while")
    ]
    assert asked_while_open == []
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "products": "unavailable"},
    }


async def test_a_purchase_fails_within_the_computed_bound_when_the_service_is_slow(
    database_url: str, fake_products: FakeProductsServer
) -> None:
    # Pauses that weigh in the bound, so that pausing too long shows beyond the margin.
    settings = too_slow(
        database_url,
        fake_products,
        products_retries=2,
        products_backoff_seconds=0.2,
        products_backoff_max_seconds=0.3,
    )
    # More products than any batch size a purchase could use: the bound holds for all at once.
    product_ids = [str(n) for n in range(1, 12)]
    bound = lookup_deadline_seconds(settings) + SCHEDULING_MARGIN_SECONDS
    async with running(settings) as service:
        for product_id in product_ids:
            await make_stock(service.db, product_id, 10)
        snap = await snapshot(service.db)

        # Every app the suite built so far is still alive (FastAPI's callable caches keep
        # the offline docs' closures), so a full collection here can take seconds: that is
        # the test process's heap, not the service's latency. Frozen objects are skipped.
        gc.freeze()
        try:
            started = time.monotonic()
            response = await service.http.post(
                "/inventory/purchase",
                json=order(*((product_id, 1) for product_id in product_ids)),
            )
            elapsed = time.monotonic() - started
        finally:
            gc.unfreeze()

        assert await snapshot(service.db) == snap
    assert_unavailable(response)
    assert elapsed <= bound, f"took {elapsed:.2f}s, bound {bound:.2f}s"
    attempts = settings.products_retries + 1
    assert [len(asked(fake_products, product_id)) for product_id in product_ids] == [
        attempts
    ] * len(product_ids)
