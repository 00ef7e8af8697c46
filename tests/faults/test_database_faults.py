"""Database faults: the caller gets 503 database-unavailable (never 500), /ready says so, and
the service recovers by itself once the database is back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.core.database import Database
from app.core.errors import DatabaseUnavailable
from app.main import create_app
from devtools import databases
from devtools.servers import free_port
from tests.support.factories import ledger_sum, quantity_of
from tests.support.password_server import PasswordRejectingServer
from tests.support.problems import assert_problem
from tests.support.proxy import TcpProxy
from tests.support.service import API_KEY, client_for, make_settings


def _via(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    await databases.truncate_postgres(postgres_url)
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def proxied_app(postgres_url: str, proxy: TcpProxy) -> AsyncIterator[FastAPI]:
    """The app talking to PostgreSQL through the proxy."""
    app = create_app(make_settings(_via(postgres_url, proxy.port)))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def proxied(proxied_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(proxied_app, **{"X-API-KEY": API_KEY}) as http:
        yield http


async def assert_every_route_is_unavailable(http: httpx.AsyncClient) -> None:
    calls = [
        ("GET", "/inventory/7", None),
        ("GET", "/inventory", None),
        ("GET", "/inventory/7/movements", None),
        ("PUT", "/inventory/7", {"quantity": 50}),
        ("PUT", "/inventory/8", {"quantity": 50}),
        ("POST", "/inventory/7/adjustments", {"delta": 5, "reason": "outage"}),
        ("DELETE", "/inventory/7", None),
    ]
    for method, path, body in calls:
        response = await http.request(method, path, json=body)
        assert_problem(response, 503, "database-unavailable")
    ready = await http.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "products": "disabled"},
        "reasons": {"database": "The database cannot answer right now."},
    }


async def test_postgres_going_away_is_503_and_the_service_recovers_when_it_is_back(
    proxied: httpx.AsyncClient, proxied_app: FastAPI, proxy: TcpProxy
) -> None:
    assert (await proxied.put("/inventory/7", json={"quantity": 3})).status_code == 201

    await proxy.stop()
    await assert_every_route_is_unavailable(proxied)

    await proxy.start()
    response = await proxied.get("/inventory/7")
    assert response.status_code == 200, response.text
    assert response.json()["quantity"] == 3
    assert (await proxied.get("/ready")).status_code == 200
    db: Database = proxied_app.state.database
    assert await quantity_of(db, "7") == 3
    assert await ledger_sum(db, "7") == 3
    adjusted = await proxied.post("/inventory/7/adjustments", json={"delta": 1, "reason": "back"})
    assert adjusted.status_code == 200


async def test_first_request_after_an_outage_nobody_noticed_succeeds(
    proxied: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    """The pooled connections died with the outage; they are replaced, not handed out."""
    for product_id in ("1", "2", "3"):
        assert (await proxied.put(f"/inventory/{product_id}", json={"quantity": 1})).is_success

    await proxy.stop()
    await proxy.start()

    for product_id in ("1", "2", "3"):
        response = await proxied.get(f"/inventory/{product_id}")
        assert response.status_code == 200, response.text


async def test_postgres_on_a_port_nobody_listens_on_is_503(
    proxied: httpx.AsyncClient, proxied_app: FastAPI, postgres_url: str
) -> None:
    working = proxied_app.state.database
    proxied_app.state.database = Database(_via(postgres_url, free_port()))
    try:
        await assert_every_route_is_unavailable(proxied)
    finally:
        await proxied_app.state.database.dispose()
        proxied_app.state.database = working


@pytest.fixture(params=["missing-database", "unknown-role", "rejected-password", "refused"])
async def refusal(request: pytest.FixtureRequest, postgres_url: str) -> AsyncIterator[Refusal]:
    """A PostgreSQL URL the server refuses, and the driver's reason for it."""
    if request.param == "missing-database":
        url = databases.unborn_postgres_url()
        name = make_url(url).database
        yield Refusal(url, f'InvalidCatalogNameError: database "{name}" does not exist')
    elif request.param == "unknown-role":
        url = make_url(postgres_url).set(username="nobody_here").render_as_string(False)
        yield Refusal(
            url, 'InvalidAuthorizationSpecificationError: role "nobody_here" does not exist'
        )
    elif request.param == "rejected-password":
        async with PasswordRejectingServer() as server:
            url = f"postgresql://inventory:wrong@127.0.0.1:{server.port}/inventory"
            reason = 'InvalidPasswordError: password authentication failed for user "inventory"'
            yield Refusal(url, reason)
    else:
        port = free_port()
        url = _via(postgres_url, port)
        yield Refusal(
            url, f"ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', {port})"
        )


@dataclass(frozen=True)
class Refusal:
    url: str
    reason: str


async def test_every_refused_connection_is_unavailable_with_the_drivers_reason(
    refusal: Refusal,
) -> None:
    db = Database(refusal.url)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await db.ping()
    finally:
        await db.dispose()
    assert db.reason(raised.value) == refusal.reason


async def test_a_service_whose_database_refuses_it_starts_and_answers_503(
    refusal: Refusal,
) -> None:
    app = create_app(make_settings(refusal.url))
    async with app.router.lifespan_context(app), client_for(app, **{"X-API-KEY": API_KEY}) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        await assert_every_route_is_unavailable(http)


async def test_hung_postgres_is_503_within_the_timeout(postgres_url: str, proxy: TcpProxy) -> None:
    """A server that accepts connections and never answers holds no request for long."""
    app = create_app(
        make_settings(_via(postgres_url, proxy.port), database_connect_timeout_seconds=0.5)
    )
    async with app.router.lifespan_context(app), client_for(app, **{"X-API-KEY": API_KEY}) as http:
        assert (await http.put("/inventory/7", json={"quantity": 3})).status_code == 201
        await proxy.stop()
        proxy.blackhole = True
        await proxy.start()

        # The guard only keeps a regression from hanging the suite; 0.5 s is the bound.
        response = await asyncio.wait_for(http.get("/inventory/7"), timeout=30)
        assert_problem(response, 503, "database-unavailable")
        ready = await asyncio.wait_for(http.get("/ready"), timeout=30)
        assert ready.json()["checks"]["database"] == "unavailable"

        await proxy.stop()
        proxy.blackhole = False
        await proxy.start()
        assert (await http.get("/inventory/7")).status_code == 200


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    return databases.fresh_sqlite(sqlite_template, tmp_path)


async def test_sqlite_locked_beyond_the_busy_timeout_is_503_until_released(
    sqlite_url: str,
) -> None:
    app = create_app(make_settings(sqlite_url, sqlite_busy_timeout_ms=100))
    async with app.router.lifespan_context(app), client_for(app, **{"X-API-KEY": API_KEY}) as http:
        assert (await http.put("/inventory/7", json={"quantity": 3})).status_code == 201
        holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            for method, path, body in (
                ("PUT", "/inventory/7", {"quantity": 50}),
                ("POST", "/inventory/7/adjustments", {"delta": 5, "reason": "locked"}),
                ("DELETE", "/inventory/7", None),
            ):
                response = await http.request(method, path, json=body)
                assert_problem(response, 503, "database-unavailable")
            # Readers are not blocked by a writer (WAL).
            assert (await http.get("/inventory/7")).json()["quantity"] == 3
            holder.execute("ROLLBACK")
        finally:
            holder.close()

        adjusted = await http.post("/inventory/7/adjustments", json={"delta": 1, "reason": "free"})
        assert adjusted.status_code == 200, adjusted.text
        db: Database = app.state.database
        assert await quantity_of(db, "7") == 4
        assert await ledger_sum(db, "7") == 4
