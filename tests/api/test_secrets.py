"""API keys: never sent back, compared in constant time, and an empty one is no key."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.api.auth import ApiKeyMiddleware
from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from devtools.servers import free_port
from tests.support.factories import make_stock
from tests.support.service import API_KEY, client_for, make_settings, start_up_refusal

ROBOT_KEY = "robot-key-abcdef"
NEAR_MISSES = [
    API_KEY[:-1],
    API_KEY + "0",
    API_KEY[:1],
    API_KEY.upper(),
    API_KEY * 2,
    ROBOT_KEY[::-1],
    "x" * 4096,
]


def assert_carries_no_key(response: httpx.Response, *offered: str) -> None:
    exposed = (response.text + repr(response.headers.raw)).lower()
    for secret in (API_KEY, ROBOT_KEY, *offered):
        if secret:
            assert secret.lower() not in exposed, (secret, response.status_code)


async def _every_kind_of_answer(http: httpx.AsyncClient) -> list[httpx.Response]:
    json = {"content-type": "application/json"}
    return [
        await http.get("/inventory/7"),  # 200 (or 401)
        await http.get("/inventory/missing"),  # 404
        await http.put("/inventory/7", json={"quantity": -1}),  # 422
        await http.put("/inventory/7", content=b"{broken", headers=json),  # 422 malformed
        await http.put("/inventory/7", json={"quantity": 1}, headers={"If-Match": '"99"'}),
        await http.post("/inventory/7/adjustments", json={"delta": -99, "reason": "r"}),  # 409
        await http.put("/inventory/7", content=b"x" * (1024 * 1024 + 1), headers=json),  # 413
        await http.patch("/inventory/7"),  # 405
        await http.get("/inventory?cursor=forged"),  # 422
        await http.post(
            "/inventory/purchase", json={"items": [{"product_id": "7", "quantity": 99}]}
        ),
        await http.get("/ready"),
        await http.get("/openapi.json"),
    ]


@pytest.mark.parametrize("offered", [API_KEY, ROBOT_KEY, None, *NEAR_MISSES[:2]])
async def test_no_answer_carries_an_api_key(
    app: FastAPI, db: Database, offered: str | None
) -> None:
    await make_stock(db, "7", 3)
    headers = {} if offered is None else {"X-API-KEY": offered}
    async with client_for(app, **headers) as http:
        for response in await _every_kind_of_answer(http):
            assert_carries_no_key(response, offered or "")


async def test_a_database_outage_answer_carries_no_key(app: FastAPI) -> None:
    working = app.state.database
    app.state.database = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    try:
        async with client_for(app, **{"X-API-KEY": API_KEY}) as http:
            response = await http.get("/inventory/7")
    finally:
        await app.state.database.dispose()
        app.state.database = working
    assert response.status_code == 503
    assert_carries_no_key(response)


@pytest.mark.parametrize("offered", NEAR_MISSES)
async def test_keys_of_other_lengths_prefixes_and_cases_are_refused(
    app: FastAPI, offered: str
) -> None:
    async with client_for(app, **{"X-API-KEY": offered}) as http:
        assert (await http.get("/inventory")).status_code == 401


async def test_each_configured_key_is_accepted(app: FastAPI) -> None:
    for key in (API_KEY, ROBOT_KEY):
        async with client_for(app, **{"X-API-KEY": key}) as http:
            assert (await http.get("/inventory")).status_code == 200


def _scope(key: bytes) -> dict[str, Any]:
    return {"type": "http", "path": "/inventory/7", "headers": [(b"x-api-key", key)]}


@pytest.mark.parametrize(
    ("offered", "actor"),
    [(b"k1", "first"), (b"a-much-longer-third-key", "third"), (b"k", None), (b"", None)],
)
def test_every_key_is_compared_in_constant_time_whichever_matches(
    monkeypatch: pytest.MonkeyPatch, offered: bytes, actor: str | None
) -> None:
    compared: list[tuple[int, int]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = [("first", "k1"), ("second", "key-2"), ("third", "a-much-longer-third-key")]
    middleware = ApiKeyMiddleware(FastAPI(), keys=keys)

    assert middleware._actor(_scope(offered)) == actor
    # Every key, every time, and always equal lengths: timing tells neither which key
    # nearly matched nor how long any key is.
    assert compared == [(32, 32)] * len(keys)


def test_blank_api_key_counts_as_unset_from_the_environment_and_from_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for value in ("", "   "):
        monkeypatch.setenv("API_KEY", value)
        monkeypatch.setenv("API_KEYS", "")
        assert Settings(_env_file=None).actor_keys() == []
    monkeypatch.delenv("API_KEY")
    monkeypatch.delenv("API_KEYS")
    dotenv = tmp_path / ".env"
    dotenv.write_text("API_KEY=\nAPI_KEYS=\n")
    assert Settings(_env_file=dotenv).actor_keys() == []


def test_surrounding_blanks_are_not_part_of_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "  k0  ")
    assert Settings(_env_file=None).actor_keys() == [("default", "k0")]


async def test_empty_api_key_opens_the_service_and_start_up_says_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("API_KEYS", "")
    settings = Settings(_env_file=None, database_url=database_url)
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="app"):
        async with app.router.lifespan_context(app), client_for(app) as http:
            assert (await http.get("/inventory")).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("open to anyone" in message for message in warnings), warnings


def test_a_bad_key_setting_is_named_but_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-value-without-a-name"
    monkeypatch.setenv("API_KEYS", secret)
    message = start_up_refusal()
    assert "API_KEYS" in message
    assert secret not in message


def test_settings_never_show_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings("sqlite:///x.db", api_key="k0-secret", products_api_key="p-secret")
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "k0-secret" not in shown
    assert "p-secret" not in shown
    assert API_KEY not in shown
