"""`/docs` and `/redoc` load nothing from off the machine."""

from __future__ import annotations

import re
from typing import Any

import httpx

# An address a page would load from: any scheme-and-host URL in the HTML.
_URL = re.compile(r"""(?:src|href)\s*=\s*["']?(https?:)?//""", re.IGNORECASE)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_the_pages_load_only_the_services_own_assets(anonymous: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await anonymous.get(page)).text
        assert not _URL.search(html), page
        for asset in re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", html):
            assert (await anonymous.get(asset)).status_code == 200, (page, asset)


async def test_redoc_may_not_fetch_its_logo_from_a_cdn(anonymous: httpx.AsyncClient) -> None:
    """ReDoc's bundle always renders Redocly's logo from a CDN; the page's policy is what
    keeps the browser from asking for it."""
    response = await anonymous.get("/redoc")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["script-src"] == "'self'"


async def test_the_document_points_nowhere_else(anonymous: httpx.AsyncClient) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    assert "x-logo" not in document["info"]
    assert all(ref.startswith("#/") for ref in _refs(document))
    assert "servers" not in document
