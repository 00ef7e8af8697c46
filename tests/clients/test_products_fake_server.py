"""The products client against a real HTTP server of our own (devtools/fake_products.py)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import pytest

from app.clients.products import (
    HttpProductsCatalog,
    ProductLookup,
    ProductStatus,
    build_http_client,
    lookup_all,
    lookup_deadline_seconds,
)
from app.core.config import Settings
from app.core.context import request_id_var
from app.core.errors import ProductsUnavailable
from devtools.fake_products import BodyShape, FakeProductsServer
from devtools.servers import environment, start
from tests.support.products import SCHEDULING_MARGIN_SECONDS, catalog_for, catalog_settings

TOWEL = {"id": "42", "name": "Towel", "price": 12.9}


def product_requests(fake: FakeProductsServer) -> list[str]:
    return [request.path for request in fake.requests if request.path.startswith("/products/")]


@pytest.mark.parametrize("shape", ["plain", "data", "jsonapi"])
async def test_each_body_shape_is_found_flat(
    fake_products: FakeProductsServer, shape: BodyShape
) -> None:
    fake_products.serve_shape(shape)

    async with catalog_for(fake_products.url) as catalog:
        found = await catalog.lookup("42")

    assert found == ProductLookup("42", ProductStatus.FOUND, TOWEL)


async def test_unknown_product_is_not_found(fake_products: FakeProductsServer) -> None:
    async with catalog_for(fake_products.url) as catalog:
        assert await catalog.lookup("nope") == ProductLookup("nope", ProductStatus.NOT_FOUND)


async def test_forwards_api_key_and_request_id(fake_products: FakeProductsServer) -> None:
    token = request_id_var.set("trace-77")
    try:
        async with catalog_for(fake_products.url, products_api_key="k-1") as catalog:
            await catalog.lookup("42")
    finally:
        request_id_var.reset(token)

    (request,) = fake_products.requests
    assert request.path == "/products/42"
    assert request.headers["x-api-key"] == "k-1"
    assert request.headers["x-request-id"] == "trace-77"
    assert request.headers["accept"] == "application/json, application/vnd.api+json"


async def test_right_api_key_is_let_in(fake_products: FakeProductsServer) -> None:
    fake_products.require_api_key("k-1")

    async with catalog_for(fake_products.url, products_api_key="k-1") as catalog:
        assert (await catalog.lookup("42")).status is ProductStatus.FOUND


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_missing_or_wrong_api_key_cannot_answer(
    fake_products: FakeProductsServer, key: str | None
) -> None:
    fake_products.require_api_key("k-1")

    async with catalog_for(fake_products.url, products_api_key=key) as catalog:
        with pytest.raises(ProductsUnavailable, match=r"refused our credentials \(401\)"):
            await catalog.lookup("42")

    assert product_requests(fake_products) == ["/products/42"]


async def test_server_error_cannot_answer_without_retrying(
    fake_products: FakeProductsServer,
) -> None:
    fake_products.fail_with(500)

    async with catalog_for(fake_products.url) as catalog:
        with pytest.raises(ProductsUnavailable, match="answered 500"):
            await catalog.lookup("42")

    assert product_requests(fake_products) == ["/products/42"]


async def test_flaky_service_is_retried_into_an_answer(fake_products: FakeProductsServer) -> None:
    fake_products.fail_first(2, status=503)

    async with catalog_for(fake_products.url, products_retries=2) as catalog:
        found = await catalog.lookup("42")

    assert found.product == TOWEL
    assert len(product_requests(fake_products)) == 3


async def test_flaky_service_beyond_the_retries_cannot_answer(
    fake_products: FakeProductsServer,
) -> None:
    fake_products.fail_first(10, status=503)

    async with catalog_for(fake_products.url, products_retries=2) as catalog:
        with pytest.raises(ProductsUnavailable, match="answered 503"):
            await catalog.lookup("42")

    assert len(product_requests(fake_products)) == 3


async def test_body_that_is_not_json_cannot_answer(fake_products: FakeProductsServer) -> None:
    fake_products.answer_not_json()

    async with catalog_for(fake_products.url) as catalog:
        with pytest.raises(ProductsUnavailable, match="not JSON"):
            await catalog.lookup("42")


async def seconds_to_fail(settings: Settings, reason: str) -> float:
    """How long a look-up takes to fail with `ProductsUnavailable` for `reason`."""
    async with build_http_client(settings) as client:
        catalog = HttpProductsCatalog(client, settings)
        started = time.monotonic()
        with pytest.raises(ProductsUnavailable, match=reason):
            await catalog.lookup("42")
        return time.monotonic() - started


async def test_slow_service_fails_within_the_computed_deadline(
    fake_products: FakeProductsServer,
) -> None:
    settings = catalog_settings(
        fake_products.url,
        products_timeout_seconds=0.2,
        products_retries=2,
        products_backoff_seconds=0.05,
        products_backoff_max_seconds=0.1,
    )
    fake_products.be_slow(10 * settings.products_timeout_seconds)

    elapsed = await seconds_to_fail(settings, "no answer")

    attempts = settings.products_retries + 1
    assert elapsed <= lookup_deadline_seconds(settings) + SCHEDULING_MARGIN_SECONDS
    assert elapsed >= attempts * settings.products_timeout_seconds
    assert len(product_requests(fake_products)) == attempts


async def test_closed_port_is_unavailable_quickly(closed_port_url: str) -> None:
    settings = catalog_settings(closed_port_url, products_timeout_seconds=2.0, products_retries=2)

    elapsed = await seconds_to_fail(settings, "ConnectError")

    # Refused connections fail at once: no attempt waits for its timeout.
    assert elapsed < settings.products_timeout_seconds


async def test_open_circuit_stops_asking_the_service(fake_products: FakeProductsServer) -> None:
    fake_products.fail_with(500)

    async with catalog_for(fake_products.url, products_circuit_failures=2) as catalog:
        for _ in range(2):
            with pytest.raises(ProductsUnavailable):
                await catalog.lookup("42")
        with pytest.raises(ProductsUnavailable, match="not asking"):
            await catalog.lookup("42")
        assert catalog.circuit_state == "open"

    assert len(product_requests(fake_products)) == 2


async def test_concurrent_lookups_of_one_id_reach_the_service_once(
    fake_products: FakeProductsServer,
) -> None:
    fake_products.be_slow(0.2)

    async with catalog_for(fake_products.url, products_timeout_seconds=2.0) as catalog:
        results = await asyncio.gather(*(catalog.lookup("42") for _ in range(10)))

    assert {result.status for result in results} == {ProductStatus.FOUND}
    assert product_requests(fake_products) == ["/products/42"]


async def test_lookup_all_against_the_service(fake_products: FakeProductsServer) -> None:
    async with catalog_for(fake_products.url) as catalog:
        lookups = await lookup_all(catalog, ["1", "2", "nope", "1"])

    assert {pid: lookup.status for pid, lookup in lookups.items()} == {
        "1": ProductStatus.FOUND,
        "2": ProductStatus.FOUND,
        "nope": ProductStatus.NOT_FOUND,
    }


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(None, "ok"), (404, "ok"), (500, "unavailable"), (401, "unauthorized")],
)
async def test_probe_names_what_the_answer_means(
    fake_products: FakeProductsServer, status: int | None, verdict: str
) -> None:
    if status is not None:
        fake_products.fail_with(status)

    async with catalog_for(fake_products.url) as catalog:
        assert await catalog.probe() == verdict


async def test_probe_of_a_slow_service_is_unavailable_after_one_timeout(
    fake_products: FakeProductsServer,
) -> None:
    fake_products.be_slow(3.0)

    async with catalog_for(fake_products.url, products_timeout_seconds=0.2) as catalog:
        started = time.monotonic()
        assert await catalog.probe() == "unavailable"

    assert time.monotonic() - started <= 0.2 + SCHEDULING_MARGIN_SECONDS


async def test_probe_of_a_closed_port_is_unavailable(closed_port_url: str) -> None:
    async with catalog_for(closed_port_url) as catalog:
        assert await catalog.probe() == "unavailable"


def test_runs_standalone_with_a_demo_catalog() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start(
        [sys.executable, "-m", "devtools.fake_products", "--port", str(port)],
        environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        response = _get_when_up(f"http://127.0.0.1:{port}/products/1", within_seconds=10)
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert response.status_code == 200
    assert response.json()["id"] == "1"


def _get_when_up(url: str, *, within_seconds: float) -> httpx.Response:
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
