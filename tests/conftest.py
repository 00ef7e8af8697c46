from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from devtools import databases
from devtools.fake_products import FakeProductsServer
from tests.support.service import API_KEY, client_for, make_settings


@pytest.fixture(autouse=True)
def _no_settings_of_the_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the developer's shell (DATABASE_URL, API_KEY, ...) reaches a test that
    reads the environment, as start-up and the command line do: each sets what it reads."""
    for field in Settings.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)
        monkeypatch.delenv(field, raising=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with databases.sqlite_template(tmp_path_factory.mktemp("template")) as template:
        yield template


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if databases.POSTGRES_URL is None:
        pytest.skip(databases.SKIP_POSTGRES_REASON)
    with databases.postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def slot(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[databases.DatabaseSlot]:
    """A database on each engine that the test creates, migrates or loses as it needs."""
    if request.param == "postgresql" and databases.POSTGRES_URL is None:
        pytest.skip(databases.SKIP_POSTGRES_REASON)
    slot = databases.DatabaseSlot(request.param, tmp_path)
    yield slot
    await slot.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each engine."""
    if request.param == "sqlite":
        return databases.fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(databases.truncate_postgres(url))
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
    application.dependency_overrides.clear()


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.database
    return database


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, **{"X-API-KEY": API_KEY}) as http:
        yield http


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture(scope="session")
def fake_products_server() -> Iterator[FakeProductsServer]:
    """One running fake products service for the whole session; use `fake_products`."""
    with FakeProductsServer() as server:
        yield server


@pytest.fixture
def fake_products(fake_products_server: FakeProductsServer) -> FakeProductsServer:
    """The running fake products server, back to plain answers from the demo catalog."""
    fake_products_server.reset()
    return fake_products_server


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A URL on 127.0.0.1 where connections are refused.

    The port stays bound (so nobody else takes it) but never listens, which makes the
    kernel refuse every connection at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The skipped tests: one line for PostgreSQL's half, each other reason as `-rs` would
    list it (the options' `-rfExX` leave skips to this)."""
    reports = terminalreporter.stats.get("skipped", [])
    if not reports:
        return
    postgres = 0
    others: Counter[tuple[str, str]] = Counter()
    for report in reports:
        path, line, reason = report.longrepr
        if databases.SKIP_POSTGRES_REASON in reason:
            postgres += 1
        else:
            where = os.path.relpath(path, terminalreporter.config.rootpath)
            where = where if line is None else f"{where}:{line + 1}"
            others[(where, reason.removeprefix("Skipped: "))] += 1
    terminalreporter.write_sep("=", "skipped")
    if postgres:
        terminalreporter.write_line(
            f"{postgres} PostgreSQL tests skipped: TEST_POSTGRES_URL runs them "
            "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        )
    for (where, reason), count in sorted(others.items()):
        terminalreporter.write_line(f"SKIPPED [{count}] {where}: {reason}")
