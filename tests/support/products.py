"""The products service in tests: the service or a bare catalog pointed at one, and what
was asked of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.clients.products import HttpProductsCatalog, build_http_client
from app.core.config import Settings
from devtools.fake_products import FakeProductsServer, RecordedRequest
from tests.support.problems import assert_problem
from tests.support.service import make_settings

# The key the inventory sends to the products service; the fake requires it in every test,
# so every successful look-up also proves it was forwarded.
PRODUCTS_KEY = "products-key-9876543210"
# Room for the event loop and the OS to schedule us, on top of the computed worst case.
SCHEDULING_MARGIN_SECONDS = 0.3
# Ample for the fake to answer on a loaded machine: an answer that is meant to come must not
# time out. Tests of a slow products service use the short timeout, so they end quickly.
TIMEOUT_SECONDS = 2.0
# Where `/ready` and `inventory check` ask the products service (at the default path).
READINESS_PROBE = "/products/inventory-readiness-probe-0000"
# Far beyond any timeout the tests set; the fake's teardown cuts such waits short.
SLOW_SECONDS = 30.0


def settings_for(database_url: str, products_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "products_service_url": products_url,
        "products_api_key": PRODUCTS_KEY,
        "products_timeout_seconds": TIMEOUT_SECONDS,
        "products_retries": 2,
        "products_backoff_seconds": 0.02,
        "products_backoff_max_seconds": 0.05,
        # No cache: every request asks the fake, so a switched mode shows at once.
        "products_cache_ttl_seconds": 0,
        # The circuit stays closed unless a test is about the circuit.
        "products_circuit_failures": 1000,
        "products_circuit_reset_seconds": 30,
    }
    return make_settings(database_url, **(values | overrides))


def product_lookups(fake: FakeProductsServer) -> list[RecordedRequest]:
    return [request for request in fake.requests if request.path.startswith("/products/")]


def assert_unavailable(response: httpx.Response) -> int:
    """A 503 products-unavailable with a usable Retry-After; returns its seconds."""
    body = assert_problem(response, 503, "products-unavailable")
    assert body["detail"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    return int(retry_after)


def catalog_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "products_service_url": url,
        "products_api_key": None,
        "products_timeout_seconds": 0.3,
        "products_retries": 2,
        "products_backoff_seconds": 0.02,
        "products_backoff_max_seconds": 0.05,
        "products_circuit_failures": 5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def catalog_for(url: str, **overrides: Any) -> AsyncIterator[HttpProductsCatalog]:
    settings = catalog_settings(url, **overrides)
    async with build_http_client(settings) as client:
        yield HttpProductsCatalog(client, settings)
