"""The database comes and goes under a running service: it starts without one, answers 503
while there is none or its schema is not at head, and becomes ready by itself, no restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.core.migrations import head_revision
from app.main import create_app
from devtools import databases
from devtools.servers import start_service, stop_service
from tests.support.logs import json_lines
from tests.support.problems import assert_problem
from tests.support.service import API_KEY, client_for, make_settings

UNREACHABLE = "The database cannot answer right now."


@pytest.fixture
async def app(slot: databases.DatabaseSlot) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(slot.url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, **{"X-API-KEY": API_KEY}) as client:
        yield client


def _schema_behind(url: str) -> str:
    return (
        f"The database schema is at nothing, the service needs {head_revision(url)}: "
        "run the migrations (`inventory migrate`)."
    )


async def assert_not_ready(http: httpx.AsyncClient, reason: str) -> None:
    """/health answers; /ready and every data route say 503, and why."""
    assert (await http.get("/health")).json()["status"] == "ok"
    ready = await http.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "products": "disabled"},
        "reasons": {"database": reason},
    }
    for method, path, body in (
        ("GET", "/inventory/7", None),
        ("GET", "/inventory", None),
        ("PUT", "/inventory/7", {"quantity": 5}),
        ("POST", "/inventory/purchase", {"items": [{"product_id": "7", "quantity": 1}]}),
    ):
        response = await http.request(method, path, json=body)
        assert_problem(response, 503, "database-unavailable")
        assert response.json()["detail"] == reason


async def assert_ready(http: httpx.AsyncClient) -> None:
    ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "products": "disabled"}}


async def test_a_service_started_before_its_database_exists_becomes_ready_by_itself(
    capsys: pytest.CaptureFixture[str], slot: databases.DatabaseSlot, http: httpx.AsyncClient
) -> None:
    if slot.engine == "sqlite":
        driver_reason = "OperationalError: unable to open database file"
    else:
        name = make_url(slot.url).database
        driver_reason = f'InvalidCatalogNameError: database "{name}" does not exist'
    warnings = [line["event"] for line in json_lines(capsys) if line["level"] == "warning"]
    assert (
        f"database not ready at start-up ({driver_reason}): /ready and data routes answer "
        "503 until it is" in warnings
    )
    await assert_not_ready(http, UNREACHABLE)

    await slot.create()
    await assert_not_ready(http, _schema_behind(slot.url))

    await slot.migrate()
    await assert_ready(http)
    assert (await http.put("/inventory/7", json={"quantity": 5})).status_code == 201
    assert (await http.get("/inventory/7")).json()["quantity"] == 5


async def test_a_database_dropped_and_recreated_under_a_running_service_is_503_then_recovers(
    slot: databases.DatabaseSlot, app: FastAPI
) -> None:
    await slot.create()
    await slot.migrate()
    async with client_for(app, **{"X-API-KEY": API_KEY}) as http:
        # Several pooled connections to the database that is about to go.
        puts = [http.put(f"/inventory/{n}", json={"quantity": n}) for n in range(1, 6)]
        assert {r.status_code for r in await asyncio.gather(*puts)} == {201}

        await slot.drop()
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert_problem(await http.get("/inventory/1"), 503, "database-unavailable")

        # SQLite creates the missing file when it connects, PostgreSQL needs CREATE DATABASE:
        # either way an empty database, which must not be used.
        await slot.create()
        await assert_not_ready(http, _schema_behind(slot.url))

        await slot.migrate()
        await assert_ready(http)
        for n in range(1, 6):  # what was stored went with the dropped database
            assert (await http.get(f"/inventory/{n}")).status_code == 404
        assert (await http.put("/inventory/1", json={"quantity": 9})).status_code == 201
        assert (await http.get("/inventory/1")).json()["quantity"] == 9


def _wait_for(url: str, status: int, *, seconds: float) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.get(url, timeout=2)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_a_service_process_started_before_its_database_exists_becomes_ready_without_restart(
    slot: databases.DatabaseSlot,
) -> None:
    server, base_url = start_service(slot.url, workers=1, up="/health")
    try:
        assert httpx.get(f"{base_url}/ready", timeout=5).status_code == 503
        missing = httpx.get(f"{base_url}/inventory/7", timeout=5)
        assert_problem(missing, 503, "database-unavailable")

        asyncio.run(slot.create())
        asyncio.run(slot.migrate())

        assert _wait_for(f"{base_url}/ready", 200, seconds=10).status_code == 200
        assert (
            httpx.put(f"{base_url}/inventory/7", json={"quantity": 1}, timeout=5).status_code == 201
        )
        assert server.poll() is None  # the same process all along
    finally:
        stop_service(server)
