"""A catalog that takes connections and never answers, under a burst of new products: every
buyer gets a clear 503 within the one deadline of a look-up, at the default settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.clients.products import lookup_bound_seconds
from devtools import databases
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


@pytest.mark.slow
async def test_every_buyer_gets_a_503_within_the_lookup_bound(
    hung_catalog: str, sqlite_template: Path, tmp_path: Path
) -> None:
    settings = make_settings(
        databases.fresh_sqlite(sqlite_template, tmp_path),
        products_service_url=hung_catalog,
    )
    bound = lookup_bound_seconds(settings)
    async with running(settings) as service:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(_timed(service.http, f"new-{n}", started) for n in range(BUYERS))
        )

    slowest = max(seconds for seconds, _ in answers)
    for _, response in answers:
        assert_unavailable(response)
    assert slowest <= bound + MARGIN_SECONDS, (slowest, bound)
