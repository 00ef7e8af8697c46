"""Health, readiness, metrics, docs and CORS: what operators and browsers rely on."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.api.deps import get_database
from app.api.health import DATABASE_PROBE_SECONDS
from app.core.database import Database
from app.core.migrations import head_revision
from app.main import create_app
from devtools import databases
from tests.support.problems import assert_problem
from tests.support.service import client_for, make_settings


async def test_health_is_ok(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health")
    version = importlib.metadata.version("inventory")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "version": version})


async def test_ready_names_each_check(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "products": "disabled"},
    }


def _unreachable_database(database_url: str, tmp_path: Path) -> Database:
    if database_url.startswith("sqlite"):
        return Database(f"sqlite:///{tmp_path / 'missing-directory' / 'inventory.db'}")
    return Database("postgresql://postgres@127.0.0.1:1/postgres")  # nothing listens on port 1


async def _ready_on(
    app: FastAPI, anonymous: httpx.AsyncClient, database: Database
) -> httpx.Response:
    """`GET /ready` answered with `database` in place of the app's own."""
    app.dependency_overrides[get_database] = lambda: database
    try:
        return await anonymous.get("/ready")
    finally:
        await database.dispose()


async def test_ready_is_503_when_the_database_is_down(
    app: FastAPI, anonymous: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    response = await _ready_on(app, anonymous, _unreachable_database(database_url, tmp_path))

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "products": "disabled"},
        "reasons": {"database": "The database cannot answer right now."},
    }


async def test_ready_names_a_schema_other_than_the_one_the_service_needs(
    app: FastAPI, anonymous: httpx.AsyncClient, database_url: str
) -> None:
    response = await _ready_on(app, anonymous, Database(database_url, schema_revision="9999"))

    assert response.status_code == 503
    assert response.json()["reasons"] == {
        "database": f"The database schema is at {head_revision(database_url)}, the service "
        "needs 9999: run the migrations (`inventory migrate`)."
    }


async def test_ready_says_when_the_database_does_not_answer_in_time(
    sqlite_template: Path, tmp_path: Path
) -> None:
    app = create_app(make_settings(databases.fresh_sqlite(sqlite_template, tmp_path)))
    app.dependency_overrides[get_database] = lambda: _HungDatabase()
    async with app.router.lifespan_context(app), client_for(app) as http:
        response = await asyncio.wait_for(http.get("/ready"), timeout=10)

    assert response.status_code == 503
    assert response.json()["reasons"] == {
        "database": f"The database did not answer within {DATABASE_PROBE_SECONDS:g} s."
    }


class _HungDatabase:
    async def ping(self) -> None:
        await asyncio.sleep(3600)


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text, name).get(frozenset(labels.items()), 0.0)


async def test_adjustment_raises_the_movement_counter(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    await client.put("/inventory/7", json={"quantity": 5})
    before = await _metric(anonymous, "inventory_movements_total", kind="adjust")

    await client.post("/inventory/7/adjustments", json={"delta": -2, "reason": "broken"})

    assert await _metric(anonymous, "inventory_movements_total", kind="adjust") == before + 1


async def test_refused_adjustment_counts_no_movement(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    await client.put("/inventory/7", json={"quantity": 1})
    before = await _metric(anonymous, "inventory_movements_total", kind="adjust")

    response = await client.post("/inventory/7/adjustments", json={"delta": -2, "reason": "x"})

    assert response.status_code == 409
    assert await _metric(anonymous, "inventory_movements_total", kind="adjust") == before


async def test_requests_are_counted_by_route_template_method_and_status(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    labels = {"route": "/inventory/{product_id}", "method": "GET", "status": "404"}
    before = await _metric(anonymous, "inventory_http_requests_total", **labels)
    latency_before = await _metric(
        anonymous,
        "inventory_http_request_duration_seconds_count",
        route="/inventory/{product_id}",
        method="GET",
    )

    await client.get("/inventory/nothing-here")
    await client.get("/inventory/nor-here")

    assert await _metric(anonymous, "inventory_http_requests_total", **labels) == before + 2
    latency_after = await _metric(
        anonymous,
        "inventory_http_request_duration_seconds_count",
        route="/inventory/{product_id}",
        method="GET",
    )
    assert latency_after == latency_before + 2


async def test_unknown_paths_share_one_route_label(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    labels = {"route": "(unmatched)", "method": "GET", "status": "404"}
    before = await _metric(anonymous, "inventory_http_requests_total", **labels)
    await client.get("/random-1")
    await client.get("/random-2")
    assert await _metric(anonymous, "inventory_http_requests_total", **labels) == before + 2


async def test_metrics_show_every_purchase_outcome_and_lookup_outcome(
    anonymous: httpx.AsyncClient,
) -> None:
    text = (await anonymous.get("/metrics")).text
    outcomes = {dict(labels)["outcome"] for labels in _samples(text, "inventory_purchases_total")}
    assert outcomes == {
        "completed",
        "insufficient_stock",
        "unknown_product",
        "products_unavailable",
        "replayed",
    }
    lookups = _samples(text, "inventory_product_lookups_total")
    assert {dict(labels)["outcome"] for labels in lookups} == {
        "found",
        "not_found",
        "unavailable",
        "cache_hit",
    }


class _CatalogWithCircuit:
    enabled = True
    circuit_state = "half_open"


async def test_metrics_show_the_circuit_state_when_the_catalog_has_one(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    app.state.catalog = _CatalogWithCircuit()
    text = (await anonymous.get("/metrics")).text
    states = _samples(text, "inventory_products_circuit_state")
    assert {dict(labels)["state"]: value for labels, value in states.items()} == {
        "closed": 0.0,
        "open": 0.0,
        "half_open": 1.0,
    }


async def test_standalone_catalog_has_no_circuit_metric(anonymous: httpx.AsyncClient) -> None:
    text = (await anonymous.get("/metrics")).text
    assert "inventory_products_circuit_state" not in text


_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_use_only_the_services_own_assets(
    anonymous: httpx.AsyncClient, page: str
) -> None:
    response = await anonymous.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html
    assert "https://" not in html
    urls = [first or second for first, second in _ASSET.findall(html)]
    assert any(url.endswith(".js") for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        assert (await anonymous.get(url)).status_code == 200, url


async def test_swagger_ui_keeps_the_api_key_between_reloads(anonymous: httpx.AsyncClient) -> None:
    html = (await anonymous.get("/docs")).text
    assert '"persistAuthorization": true' in html


async def test_every_operation_is_documented(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"]["in"] == "header"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation.get("description"), where
            body = operation.get("requestBody")
            if body is not None:
                schema_ref = body["content"]["application/json"]["schema"]["$ref"]
                schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
                assert "example" in schema or "examples" in schema, f"{where}: no body example"
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and path.startswith("/inventory"):
                    content = answer["content"]["application/problem+json"]["schema"]
                    assert content["$ref"].endswith("/Problem"), f"{where} {status}"


async def test_cors_preflight_from_an_allowed_origin(database_url: str) -> None:
    app = create_app(make_settings(database_url, cors_origins=["https://shop.example"]))
    async with app.router.lifespan_context(app), client_for(app) as http:
        response = await http.options(
            "/inventory/7",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "X-API-KEY, Content-Type",
            },
        )
        other = await http.options(
            "/inventory/7",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert "PUT" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in other.headers


async def test_cors_preflight_from_an_origin_not_allowed_is_answered_as_without_cors(
    database_url: str,
) -> None:
    app = create_app(make_settings(database_url, cors_origins=["https://shop.example"]))
    async with app.router.lifespan_context(app), client_for(app) as http:
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
        public = await http.options("/health", headers=preflight)
        keyed = await http.options("/inventory/7", headers=preflight)

    assert_problem(public, 405, "method-not-allowed")
    assert_problem(keyed, 401, "unauthorized")
    for response in (public, keyed):
        assert not [name for name in response.headers if name.lower().startswith("access-")]


async def test_no_cors_headers_without_configured_origins(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health", headers={"Origin": "https://shop.example"})
    assert not [name for name in response.headers if name.lower().startswith("access-control")]


async def test_purchases_are_counted_by_outcome(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    outcomes = ("completed", "insufficient_stock", "replayed")
    before = {o: await _metric(anonymous, "inventory_purchases_total", outcome=o) for o in outcomes}
    await client.put("/inventory/7", json={"quantity": 1})
    order = {"items": [{"product_id": "7", "quantity": 1}]}
    key = {"Idempotency-Key": "order-1"}

    assert (await client.post("/inventory/purchase", json=order, headers=key)).status_code == 201
    assert (await client.post("/inventory/purchase", json=order, headers=key)).status_code == 201
    assert (await client.post("/inventory/purchase", json=order)).status_code == 409

    for outcome in outcomes:
        after = await _metric(anonymous, "inventory_purchases_total", outcome=outcome)
        assert after == before[outcome] + 1, outcome
