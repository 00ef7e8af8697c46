"""Deny by default: every path needs the key except the contract's public ones, routes added
later included; the actor reaches routes through `CallerDep`."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount, Route

from app.api.auth import PUBLIC_ASSETS, PUBLIC_PATHS, is_public
from app.api.deps import CallerDep
from app.api.docs import REDOC_BUNDLE
from tests.support.problems import assert_problem
from tests.support.service import API_KEY, client_for

# CONTRACT.md, "Authentication": always public.
CONTRACT_PUBLIC = {"/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json"}
# Swagger UI's own page for OAuth2 flows, which belongs to /docs.
DOCS_PAGES = {"/docs/oauth2-redirect"}


def test_the_public_paths_are_exactly_the_contracts_and_the_docs_pages() -> None:
    assert PUBLIC_PATHS == CONTRACT_PUBLIC | DOCS_PAGES


@pytest.mark.parametrize("path", ["/nowhere", "/inventory-x", "/health/x", "/redoc/x", "/"])
async def test_an_unknown_path_is_401_before_404_without_a_key(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, path: str
) -> None:
    response = await anonymous.get(path)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert_problem(await client.get(path), 404, "not-found")


@pytest.mark.parametrize("prefix", ["", "/inventory", "/brand-new", "/health-report"])
async def test_a_route_added_under_any_prefix_is_protected(
    app: FastAPI, anonymous: httpx.AsyncClient, client: httpx.AsyncClient, prefix: str
) -> None:
    async def added(body: dict[str, int], caller: CallerDep) -> dict[str, Any]:
        return {"actor": caller.actor, **body}

    app.add_api_route(f"{prefix}/added", added, methods=["POST"])

    # Refused before the body is read: a malformed one is still a 401, not a 422.
    refused = await anonymous.post(
        f"{prefix}/added", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(refused, 401, "unauthorized")
    answered = await client.post(f"{prefix}/added", json={"n": 1})
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"actor": "default", "n": 1}


async def test_every_route_of_the_app_is_protected_but_the_public_ones(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    documented = {
        (path, method.upper())
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    undocumented = {
        (route.path + ("/swagger-ui.css" if isinstance(route, Mount) else ""), "GET")
        for route in app.routes
        if isinstance(route, Route | Mount)
    }
    public = set()
    for path, method in documented | undocumented:
        response = await anonymous.request(method, re.sub(r"\{[a-z_]+\}", "x1", path))
        if response.status_code != 401:
            public.add(path)
    assets = {f"{PUBLIC_ASSETS}swagger-ui.css", REDOC_BUNDLE}
    assert public == CONTRACT_PUBLIC | DOCS_PAGES | assets


async def test_the_docs_assets_are_served_without_a_key(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get(f"{PUBLIC_ASSETS}swagger-ui-bundle.js")
    assert response.status_code == 200


async def test_the_actor_of_the_key_reaches_the_route(app: FastAPI) -> None:
    async def whoami(caller: CallerDep) -> str:
        return caller.actor

    app.add_api_route("/whoami", whoami)
    async with client_for(app, **{"X-API-KEY": "robot-key-abcdef"}) as robot:
        assert (await robot.get("/whoami")).json() == "robot"
    async with client_for(app, **{"X-API-KEY": API_KEY}) as default:
        assert (await default.get("/whoami")).json() == "default"


async def test_the_document_asks_for_the_key_on_every_operation_but_the_public_ones(
    anonymous: httpx.AsyncClient,
) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            expected: list[dict[str, list[str]]] = [] if is_public(path) else [{"ApiKey": []}]
            assert operation.get("security", []) == expected, (method, path)
