from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI

from app.core.logging import MASK, MaskSecrets, configure_logging
from app.main import create_app
from devtools import databases
from devtools.servers import serving
from tests.support.logs import events, json_lines
from tests.support.service import API_KEY, client_for, make_settings

PRODUCTS_KEY = "products-secret-987654"


@pytest.fixture
async def json_app(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """Logging does not depend on the engine: SQLite only."""
    database_url = databases.fresh_sqlite(sqlite_template, tmp_path)
    settings = make_settings(database_url, log_format="json", products_api_key=PRODUCTS_KEY)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_access_line_carries_route_template_status_actor_and_request_id(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"X-API-KEY": API_KEY, "X-Request-ID": "trace-abc.1"}
    async with client_for(json_app, **headers) as http:
        await http.put("/inventory/42", json={"quantity": 5})

    [line] = [
        line for line in events(json_lines(capsys), "http.request") if line["method"] == "PUT"
    ]
    assert line["route"] == "/inventory/{product_id}"
    assert line["status"] == 201
    assert line["actor"] == "default"
    assert line["request_id"] == "trace-abc.1"
    assert line["duration_ms"] >= 0


async def test_every_line_of_a_request_carries_its_request_id(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"X-API-KEY": API_KEY, "X-Request-ID": "trace-every-line"}
    json_lines(capsys)
    async with client_for(json_app, **headers) as http:
        await http.put("/inventory/42", json={"quantity": 5})

    app_lines = [line for line in json_lines(capsys) if line["logger"].startswith("app.")]
    assert {line["event"] for line in app_lines} == {"inventory.changed", "http.request"}
    assert {line["request_id"] for line in app_lines} == {"trace-every-line"}


async def test_unrouted_request_logs_its_raw_path(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    async with client_for(json_app, **{"X-API-KEY": API_KEY}) as http:
        await http.get("/no/such/thing")

    [line] = events(json_lines(capsys), "http.request")
    assert (line["route"], line["status"]) == ("/no/such/thing", 404)


async def test_no_secret_reaches_the_logs(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    async with client_for(json_app, **{"X-API-KEY": API_KEY}) as http:
        await http.put("/inventory/1", json={"quantity": 1})
    async with client_for(json_app, **{"X-API-KEY": "wrong-key"}) as http:
        await http.get("/inventory/1")
    structlog.get_logger("app.test").info(
        "careless", api_key=API_KEY, headers={"Authorization": "Bearer abc", "accept": "*/*"}
    )
    logging.getLogger("app.test").warning("the key was %s and %s", API_KEY, PRODUCTS_KEY)

    output = capsys.readouterr().out
    assert API_KEY not in output
    assert PRODUCTS_KEY not in output
    assert "Bearer abc" not in output
    assert MASK in output
    assert '"accept": "*/*"' in output


async def test_standard_library_loggers_share_the_format(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    json_lines(capsys)
    logging.getLogger("uvicorn.error").info("Started server process")

    [line] = json_lines(capsys)
    assert line["event"] == "Started server process"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "info"


def test_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(make_settings("sqlite://", log_format="console"))
    logging.getLogger("app.test").warning("hello console")
    output = capsys.readouterr().out
    assert "hello console" in output
    assert not output.lstrip().startswith("{")


def test_json_is_the_default_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(make_settings("sqlite://"))
    logging.getLogger("app.test").warning("hello json")
    [line] = json_lines(capsys)
    assert line["event"] == "hello json"


def test_log_level_filters_lower_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(make_settings("sqlite://", log_format="json", log_level="WARNING"))
    structlog.get_logger("app.test").info("quiet")
    logging.getLogger("app.test").warning("loud")
    assert [line["event"] for line in json_lines(capsys)] == ["loud"]


async def test_crash_is_logged_with_request_id_and_answered_500(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    async def explode() -> None:
        raise RuntimeError("boom")

    json_app.add_api_route("/explode", explode)
    async with client_for(json_app, **{"X-Request-ID": "crash-1", "X-API-KEY": API_KEY}) as http:
        response = await http.get("/explode")

    assert response.status_code == 500
    lines = json_lines(capsys)
    [error] = [line for line in lines if line["event"] == "unhandled error"]
    assert error["request_id"] == "crash-1"
    assert "RuntimeError: boom" in error["exception"]
    [access] = events(lines, "http.request")
    assert access["status"] == 500


async def test_a_request_served_by_uvicorn_writes_one_access_line(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving(json_app) as (host, port):
        json_lines(capsys)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            assert (await http.get("/health")).status_code == 200
        lines = json_lines(capsys)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access == []
    assert len(events(lines, "http.request")) == 1


def test_a_secret_is_masked_as_a_token_not_inside_words() -> None:
    mask = MaskSecrets(["k", "s3cr3t-key"])
    masked = mask(None, "info", {"event": "stock levels k, key=k; url user:s3cr3t-key@host"})
    assert masked["event"] == f"stock levels {MASK}, key={MASK}; url user:{MASK}@host"
