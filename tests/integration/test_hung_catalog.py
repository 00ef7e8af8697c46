"""A catalog that takes connections and never answers, under a burst of new products: every
buyer gets a clear 503 within the one deadline of a look-up, at the default settings.

The clients, the service and the hung catalog share this process's event loop, so the time
it takes here to answer 200 buyers at once (more under coverage, or beside another test
process) is measured in the same test against a catalog that answers at once, and allowed
on top of the deadline: the bound is the service's, not this machine's speed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.clients.products import lookup_bound_seconds
from devtools import databases
from devtools.fake_products import FakeProductsServer
from tests.support.orders import order
from tests.support.products import assert_unavailable
from tests.support.service import make_settings, running

BUYERS = 200
# Room for the event loop to serve 200 requests at once on a busy machine.
MARGIN_SECONDS = 1.5


@pytest.fixture
async def hung_catalog() -> AsyncIterator[str]:
    """A server on 127.0.0.1 that accepts every connection, reads, and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=BUYERS)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def _timed(
    http: httpx.AsyncClient, product_id: str, started: float
) -> tuple[float, httpx.Response]:
    response = await http.post("/inventory/purchase", json=order((product_id, 1)))
    return time.monotonic() - started, response


async def _burst(database_url: str, catalog_url: str) -> list[tuple[float, httpx.Response]]:
    """Every buyer's answer to a purchase of a new product, with the seconds it took from
    the start of the burst."""
    async with running(make_settings(database_url, products_service_url=catalog_url)) as service:
        started = time.monotonic()
        return await asyncio.gather(
            *(_timed(service.http, f"new-{n}", started) for n in range(BUYERS))
        )


@pytest.mark.slow
async def test_every_buyer_gets_a_503_within_the_lookup_bound(
    hung_catalog: str,
    fake_products: FakeProductsServer,
    sqlite_template: Path,
    tmp_path: Path,
) -> None:
    database_url = databases.fresh_sqlite(sqlite_template, tmp_path)
    # The same burst where the catalog answers at once ("no such product"): what serving
    # it costs here, beside any deadline.
    served_at_once = await _burst(database_url, fake_products.url)
    assert all(response.status_code == 422 for _, response in served_at_once)
    serving = max(seconds for seconds, _ in served_at_once)

    answers = await _burst(database_url, hung_catalog)

    bound = lookup_bound_seconds(make_settings(database_url))
    slowest = max(seconds for seconds, _ in answers)
    for _, response in answers:
        assert_unavailable(response)
    assert slowest <= bound + serving + MARGIN_SECONDS, (slowest, bound, serving)
