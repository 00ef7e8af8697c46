"""What every request gets: authentication, request ids, problems for every error path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.core.config import Settings
from app.main import create_app
from tests.support.problems import assert_problem
from tests.support.service import API_KEY, client_for, make_settings, start_up_refusal


async def test_missing_key_is_401_with_www_authenticate(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/inventory")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "ApiKey"


async def test_wrong_key_looks_like_a_missing_one(app: FastAPI) -> None:
    async with client_for(app, **{"X-API-KEY": "wrong"}) as wrong:
        response = await wrong.get("/inventory")
    assert_problem(response, 401, "unauthorized")
    assert response.json()["detail"] == (await_missing := response.json()["detail"])
    assert await_missing


async def test_authentication_comes_before_body_parsing(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.put(
        "/inventory/1", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert_problem(response, 401, "unauthorized")


async def test_rotated_keys_record_their_actor(app: FastAPI) -> None:
    async with client_for(app, **{"X-API-KEY": "robot-key-abcdef"}) as robot:
        await robot.put("/inventory/1", json={"quantity": 1})
        movements = (await robot.get("/inventory/1/movements")).json()["items"]
    assert movements[0]["actor"] == "robot"


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json", "/docs", "/redoc"])
async def test_public_paths_need_no_key(anonymous: httpx.AsyncClient, path: str) -> None:
    assert (await anonymous.get(path)).status_code == 200


async def test_open_service_without_keys_records_anonymous(database_url: str) -> None:
    app = create_app(make_settings(database_url, api_keys={}))
    async with app.router.lifespan_context(app), client_for(app) as http:
        await http.put("/inventory/1", json={"quantity": 1})
        movements = (await http.get("/inventory/1/movements")).json()["items"]
    assert movements[0]["actor"] == "anonymous"


async def test_open_service_warns_at_start_up(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(database_url, api_keys={}))
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            pass
    assert any("open" in record.getMessage() for record in caplog.records)


def test_empty_api_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "")
    monkeypatch.setenv("API_KEYS", "")
    assert Settings(_env_file=None).actor_keys() == []


def test_api_keys_parse_name_key_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k0")
    monkeypatch.setenv("API_KEYS", "ci:k1, ops:k2")
    assert Settings(_env_file=None).actor_keys() == [
        ("ci", "k1"),
        ("ops", "k2"),
        ("default", "k0"),
    ]


@pytest.mark.parametrize(
    ("api_key", "api_keys", "accepted"),
    [
        ("", "ops:oldkey1,ops:newkey2", {"oldkey1": "ops", "newkey2": "ops"}),
        ("b-key", "default:a-key", {"a-key": "default", "b-key": "default"}),
        ("k", "ops:o1,ci:c1,ops:o2,ops:o3", {"o1": "ops", "o2": "ops", "o3": "ops", "c1": "ci"}),
    ],
)
async def test_an_actor_may_hold_several_keys(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    api_key: str,
    api_keys: str,
    accepted: dict[str, str],
) -> None:
    monkeypatch.setenv("API_KEY", api_key)
    monkeypatch.setenv("API_KEYS", api_keys)
    settings = Settings(_env_file=None, database_url=database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for number, (key, actor) in enumerate(accepted.items()):
            async with client_for(app, **{"X-API-KEY": key}) as http:
                response = await http.put(f"/inventory/p{number}", json={"quantity": 1})
                assert response.status_code == 201, (key, response.text)
                movements = (await http.get(f"/inventory/p{number}/movements")).json()
            assert movements["items"][0]["actor"] == actor
        async with client_for(app, **{"X-API-KEY": "not-a-key"}) as http:
            assert_problem(await http.get("/inventory"), 401, "unauthorized")


@pytest.mark.parametrize(("api_key", "api_keys"), [("", "ops:same,ci:same"), ("same", "ops:same")])
def test_one_key_for_two_actors_stops_start_up_naming_them(
    monkeypatch: pytest.MonkeyPatch, api_key: str, api_keys: str
) -> None:
    monkeypatch.setenv("API_KEY", api_key)
    monkeypatch.setenv("API_KEYS", api_keys)
    message = start_up_refusal()
    assert message.startswith("invalid setting API_KEYS: one key is given to two actors")
    assert "'ops'" in message
    assert "same" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_KEYS", "no-colon"),
        ("PRODUCTS_TIMEOUT_SECONDS", "0"),
        ("DATABASE_URL", "mysql://x"),
        ("PRODUCTS_SERVICE_URL", "ftp://x"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    message = start_up_refusal()
    assert message.startswith(f"invalid setting {name}:")
    assert "\n" not in message


async def test_request_id_is_echoed_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert response.headers["X-Request-ID"] == "abc.DEF-123_x"


@pytest.mark.parametrize("given", ["has space", "x" * 129, "ünï", ""])
async def test_malformed_request_id_is_replaced(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get("/health", headers={b"X-Request-ID": given.encode()})
    assert response.headers["X-Request-ID"] != given
    assert len(response.headers["X-Request-ID"]) == 32


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/inventory/purchase/"),
        ("GET", "/inventory/"),
        ("GET", "/reservations/"),
        ("GET", "/webhooks/"),
        ("GET", "/events/"),
    ],
)
async def test_a_trailing_slash_is_another_path_never_a_redirect(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    # A redirect would be built from the Host header, which the caller chooses.
    response = await client.request(
        method, path, json={"items": []}, headers={"Host": "evil.example"}
    )

    assert_problem(response, 404, "not-found")
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/reservations/zzz",
        "/inventory/purchases/zzz",
        "/webhooks/zzz",
        "/webhooks/zzz/deliveries",
        "/reservations/" + "a" * 37,
        "/inventory/purchases/" + "a" * 37,
        "/webhooks/" + "a" * 37,
    ],
)
async def test_an_id_the_service_never_issued_is_404_whatever_its_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    assert_problem(await client.get(path), 404, "not-found")


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.patch("/inventory/1", json={})
    assert_problem(response, 405, "method-not-allowed")
    assert "PUT" in response.headers["Allow"]


async def test_body_over_one_mebibyte_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"quantity": 1, "reason": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.put(
        "/inventory/1", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload-too-large")


async def test_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    response = await client.put(
        "/inventory/1", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload-too-large")


async def test_a_body_that_stops_arriving_is_408_and_the_connection_closed() -> None:
    """Whatever server runs the app, a body cannot hold its request open: the deadline is
    the service's (30 s; short here)."""
    reached = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    guarded = RequestContextMiddleware(BodyLimitMiddleware(endpoint, read_timeout=0.2))

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"quantity": '
        await asyncio.Event().wait()  # the rest never comes

    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await asyncio.wait_for(
            http.put(
                "/inventory/1", content=stalls(), headers={"content-type": "application/json"}
            ),
            timeout=10,
        )

    assert_problem(response, 408, "request-timeout")
    assert response.headers["connection"] == "close"
    assert reached == []


async def test_unexpected_exception_is_a_500_problem_without_details(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    from app.api.deps import get_database

    def broken() -> None:
        raise RuntimeError("secret internals")

    app.dependency_overrides[get_database] = broken
    response = await client.get("/inventory/1/movements", headers={"X-Request-ID": "boom-1"})

    body = assert_problem(response, 500, "internal-error")
    assert "secret internals" not in response.text
    assert body["request_id"] == "boom-1"
    assert any(record.exc_info for record in caplog.records)


async def test_openapi_declares_the_api_key_scheme(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
    assert {"ApiKey": []} in spec["paths"]["/inventory"]["get"]["security"]


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json()["status"] == "ok"
    assert (await client.get("/ready")).json() == {
        "status": "ready",
        "checks": {"database": "ok", "products": "disabled"},
    }


async def test_key_is_compared_with_the_api_key_header(app: FastAPI) -> None:
    async with client_for(app, **{"X-API-KEY": API_KEY + "x"}) as near_miss:
        assert (await near_miss.get("/inventory")).status_code == 401


async def test_head_answers_like_get_without_a_body_on_every_get_resource(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/inventory/7", json={"quantity": 5})
    await client.post("/inventory/7/adjustments", json={"delta": 1, "reason": "r"})
    receipt = await client.post(
        "/inventory/purchase", json={"items": [{"product_id": "7", "quantity": 1}]}
    )
    held = await client.post("/reservations", json={"items": [{"product_id": "7", "quantity": 1}]})
    values = {
        "product_id": "7",
        "purchase_id": receipt.json()["id"],
        "reservation_id": held.json()["id"],
        "endpoint_id": "00000000-0000-0000-0000-000000000000",
    }
    document = (await client.get("/openapi.json")).json()
    paths = [
        path.format(**values)
        for path, operations in document["paths"].items()
        if "get" in operations
    ]
    paths += ["/docs", "/redoc", "/openapi.json", "/inventory/nope-404", "/nowhere"]
    assert len(paths) >= 11
    for path in paths:
        get, head = await client.get(path), await client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        varying = {"x-request-id", "content-length", "date"}
        assert {k: v for k, v in head.headers.items() if k not in varying} == {
            k: v for k, v in get.headers.items() if k not in varying
        }, path
        if path not in ("/metrics",):  # the metrics text counts the GET just made
            assert head.headers["content-length"] == get.headers["content-length"], path


async def test_head_of_a_post_only_route_is_405_naming_the_allowed_methods(
    client: httpx.AsyncClient,
) -> None:
    response = await client.head("/inventory/7/adjustments")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert (await client.post("/inventory")).headers["allow"] == "GET, HEAD"
