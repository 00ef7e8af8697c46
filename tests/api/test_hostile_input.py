"""Hostile and malformed input: each gets a clear 4xx problem and changes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from app.core.database import Database
from app.services.cursors import encode_cursor, list_scope
from tests.support.factories import make_stock, quantity_of, snapshot
from tests.support.problems import PROBLEM, assert_problem
from tests.support.service import API_KEY, client_for

MIB = 1024 * 1024
JSON = {"content-type": "application/json"}

# Every write the API has, with a body that would be accepted.
WRITES = [
    ("PUT", "/inventory/7", {"quantity": 9}),
    ("POST", "/inventory/7/adjustments", {"delta": 1, "reason": "r"}),
    ("POST", "/inventory/purchase", {"items": [{"product_id": "7", "quantity": 1}]}),
]


@pytest.fixture
async def stocked(db: Database) -> AsyncIterator[Any]:
    """Product 7 with 3 units; after the test, the database must be exactly as it was."""
    await make_stock(db, "7", 3)
    before = await snapshot(db)
    yield before
    assert await snapshot(db) == before


async def send(client: httpx.AsyncClient, method: str, path: str, content: bytes) -> httpx.Response:
    return await client.request(method, path, content=content, headers=JSON)


async def send_json(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> httpx.Response:
    """As ASCII-only JSON, whose escapes can carry what UTF-8 cannot (lone surrogates)."""
    return await send(client, method, path, json.dumps(body).encode())


def assert_refused(
    response: httpx.Response, case: object, status: int = 422, slug: str = "validation-error"
) -> None:
    """Many cases share one test (one app each would be slow); the message names the case."""
    assert response.status_code == status, (case, response.text)
    assert_problem(response, status, slug)


# --- size -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "_body"), WRITES)
async def test_declared_body_over_one_mib_is_413(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, _body: Any
) -> None:
    body = b'{"reason": "' + b"x" * MIB + b'"}'
    assert_problem(await send(client, method, path, body), 413, "payload-too-large")


async def test_streamed_body_over_one_mib_without_length_is_413(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"quantity": 1, "reason": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = await client.put("/inventory/7", content=chunks(), headers=JSON)
    assert_problem(response, 413, "payload-too-large")


async def test_body_of_exactly_one_mib_is_not_refused_for_size(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    prefix, suffix = b'{"quantity": 1, "reason": "', b'"}'
    body = prefix + b"x" * (MIB - len(prefix) - len(suffix)) + suffix
    # Read whole, then refused for the over-long reason, not for its size.
    assert_problem(await send(client, "PUT", "/inventory/7", body), 422, "validation-error")


# --- malformed JSON -----------------------------------------------------------------------


MALFORMED_JSON = {
    "100k-nested-arrays": b"[" * 100_000,
    "deep-value": b'{"quantity": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "50k-nested-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "5000-digit-integer": b'{"quantity": ' + b"9" * 5000 + b"}",
    "NaN": b'{"quantity": NaN}',
    "Infinity": b'{"quantity": Infinity}',
    "-Infinity": b'{"quantity": -Infinity}',
    "duplicate-key": b'{"quantity": 1, "quantity": 999}',
    "trailing-comma": b'{"quantity": 1,}',
    "single-quotes": b"{'quantity': 1}",
    "truncated": b'{"quantity": 1',
    "not-utf8": b'{"quantity": 1, "reason": "\xff\xfe"}',
    "trailing-nul": b'{"quantity": 1}\x00',
    "empty": b"",
    "blank": b" \n",
    "utf8-bom": b'\xef\xbb\xbf{"quantity": 1}',
    "utf16-le": '{"quantity": 1}'.encode("utf-16-le"),
    "utf16-with-bom": '{"quantity": 1}'.encode("utf-16"),
    "utf32": '{"quantity": 1}'.encode("utf-32"),
    "cesu8-surrogate": b'{"quantity": 1, "reason": "\xed\xa0\x80"}',
    "overlong-utf8": b'{"quantity": 1, "reason": "\xc0\xaf"}',
}


@pytest.mark.parametrize(("method", "path", "_body"), WRITES)
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, _body: Any
) -> None:
    for case, body in MALFORMED_JSON.items():
        assert_refused(await send(client, method, path, body), case, 400, "malformed-json")


async def test_duplicate_keys_anywhere_in_the_body_are_refused(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    body = b'{"items": [{"product_id": "7", "quantity": 1, "quantity": 3}]}'
    response = await send(client, "POST", "/inventory/purchase", body)
    problem = assert_problem(response, 400, "malformed-json")
    assert "quantity" in str(problem["detail"]) + json.dumps(problem.get("errors"))


# --- wrong numbers --------------------------------------------------------------------------


NOT_IN_RANGE_INTEGERS: list[object] = [
    *(2**63, 2**64, -(2**63) - 1, 2**200, 10**100),
    # A number without a fraction (`1.0`, `1e3`) is the integer it is; one with a fraction, or
    # an integral one out of range, is not.
    *(1.5, -0.5, 1e300, 1e19),
    *("1", True, None, [1], {}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/inventory/7", lambda v: {"quantity": v}),
        ("POST", "/inventory/7/adjustments", lambda v: {"delta": v, "reason": "r"}),
        ("POST", "/inventory/purchase", lambda v: {"items": [{"product_id": "7", "quantity": v}]}),
    ],
)
async def test_quantities_that_are_not_in_range_integers_are_422(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, body: Any
) -> None:
    for value in NOT_IN_RANGE_INTEGERS:
        assert_refused(await client.request(method, path, json=body(value)), value)


# --- shapes and content types -------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "_body"), WRITES)
async def test_bodies_that_are_not_objects_are_422(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, _body: Any
) -> None:
    for content in (b"[]", b'[{"quantity": 1}]', b'"quantity"', b"1", b"null", b"true"):
        assert_refused(await send(client, method, path, content), content)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_a_valid_body_under_another_content_type_is_415(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, body: Any
) -> None:
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/octet-stream",
        "application/jsonx",
        "application/merge-patch+json",
        "application/json; charset=latin-1",
        "application/vnd.api+json; ext=https://jsonapi.org/ext/atomic",
        "application/vnd.api+json; version=1",
    ):
        response = await client.request(
            method, path, content=json.dumps(body).encode(), headers={"content-type": content_type}
        )
        assert_refused(response, content_type, 415, "unsupported-media-type")
        assert "Content-Type: application/json" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_a_body_without_a_content_type_is_415(
    client: httpx.AsyncClient, stocked: Any, method: str, path: str, body: Any
) -> None:
    # httpx adds no Content-Type to raw content.
    response = await client.request(method, path, content=json.dumps(body).encode())
    assert_refused(response, "no content type", 415, "unsupported-media-type")


async def test_a_form_is_415(client: httpx.AsyncClient, stocked: Any) -> None:
    response = await client.put("/inventory/7", data={"quantity": "9"})
    assert_refused(response, "form", 415, "unsupported-media-type")


async def test_json_with_a_utf8_charset_is_accepted(client: httpx.AsyncClient) -> None:
    for quantity, charset in enumerate(("utf-8", "UTF-8", '"utf-8"')):
        response = await client.put(
            "/inventory/8",
            content=json.dumps({"quantity": quantity}).encode(),
            headers={"content-type": f"application/json; charset={charset}"},
        )
        assert response.status_code in (200, 201), (charset, response.text)
        assert response.json()["quantity"] == quantity


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"quantity": NaN}', b"\xef\xbb\xbf{}", b"quantity=1"]
)
async def test_a_json_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, stocked: Any, body: bytes
) -> None:
    assert_refused(await send(client, "PUT", "/inventory/7", body), body, 400, "malformed-json")


async def test_authentication_comes_before_the_media_type_and_the_json(
    anonymous: httpx.AsyncClient, stocked: Any
) -> None:
    for headers, content in (({"content-type": "text/plain"}, b"{}"), (JSON, b"{")):
        response = await anonymous.put("/inventory/7", content=content, headers=headers)
        assert_refused(response, headers, 401, "unauthorized")


# --- text: product ids, reasons, references -------------------------------------------------

HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "line\nbreak",
    "cr\rlf",
    "tab\t",
    "\x1b[31mred",
    "\x7f",
    "next\x85line",  # C1 controls: NEL, CSI, and the rest of U+0080 … U+009F
    "\x9b31mred",
    "\x80",
    "\x9f",
    "\ud800",  # a lone surrogate: valid JSON escape, not encodable as UTF-8
    "a\udfffb",
]


async def test_control_characters_and_lone_surrogates_in_reasons_are_422(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    for text in HOSTILE_TEXT:
        for method, path, body in [
            ("PUT", "/inventory/7", {"quantity": 9, "reason": text}),
            ("POST", "/inventory/7/adjustments", {"delta": 1, "reason": text}),
            (
                "POST",
                "/inventory/purchase",
                {"items": [{"product_id": "7", "quantity": 1}], "reference": text},
            ),
        ]:
            assert_refused(await send_json(client, method, path, body), (path, text))


async def test_hostile_product_ids_in_bodies_are_422(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    for text in [*HOSTILE_TEXT, "ü", "7 ", " 7", "７", "7\u200b", "../7", "7/8"]:
        body = {"items": [{"product_id": text, "quantity": 1}]}
        assert_refused(await send_json(client, "POST", "/inventory/purchase", body), text)


async def test_hostile_product_ids_in_paths_are_422(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    segments = ["%00", "a%00b", "a%0Ab", "%0D%0A", "%C3%BC", "%E2%80%AE7", "%EF%BC%97", "%ED%A0%80"]
    for segment in segments:
        for method, suffix, body in [
            ("GET", "", None),
            ("PUT", "", {"quantity": 9}),
            ("DELETE", "", None),
            ("POST", "/adjustments", {"delta": 1, "reason": "r"}),
            ("GET", "/movements", None),
        ]:
            response = await client.request(method, f"/inventory/{segment}{suffix}", json=body)
            assert_refused(response, (method, segment, suffix))


async def test_unicode_that_is_printable_is_stored_and_answered_as_sent(
    client: httpx.AsyncClient, db: Database
) -> None:
    reason = "Ünïcødé ✓ 🧪 עברית \u202e"
    response = await client.put("/inventory/7", json={"quantity": 1, "reason": reason})
    assert response.status_code == 201
    movements = (await client.get("/inventory/7/movements")).json()["items"]
    assert movements[0]["reason"] == reason


# --- raw ASGI: what httpx refuses to send ------------------------------------------------


async def raw_request(
    app: FastAPI,
    method: str,
    raw_path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request straight into the ASGI app, with the path decoded as uvicorn does."""
    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote_to_bytes(path).decode("utf-8", "surrogateescape"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start["headers"]), content


def problem_of(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    assert dict(headers)[b"content-type"].decode().startswith(PROBLEM)
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status
    return problem


def assert_no_line_breaks(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        assert b"\r" not in name + value, (name, value)
        assert b"\n" not in name + value, (name, value)


KEY = (b"x-api-key", API_KEY.encode())


async def test_request_id_with_crlf_is_replaced_not_echoed(app: FastAPI, stocked: Any) -> None:
    status, headers, _ = await raw_request(
        app, "GET", b"/inventory/7", [KEY, (b"x-request-id", b"xyz\r\nSet-Cookie: pwned=1")]
    )
    assert status == 200
    assert_no_line_breaks(headers)
    request_id = dict(headers)[b"x-request-id"]
    assert b"xyz" not in request_id
    assert all(name != b"set-cookie" for name, _ in headers)


async def test_api_key_with_crlf_is_401(app: FastAPI, stocked: Any) -> None:
    for value in (API_KEY.encode() + b"\r\n", b"\r\n" + API_KEY.encode(), API_KEY.encode() + b"\n"):
        status, headers, body = await raw_request(
            app, "GET", b"/inventory/7", [(b"x-api-key", value)]
        )
        assert problem_of(status, headers, body)["type"] == "/problems/unauthorized"
        assert status == 401
        assert_no_line_breaks(headers)


async def test_idempotency_key_with_control_bytes_is_422(app: FastAPI, stocked: Any) -> None:
    body = json.dumps({"items": [{"product_id": "7", "quantity": 1}]}).encode()
    for value in (b"k\r\nX-Injected: 1", b"k\n", b"\r\n", b"k\x00", b"\xff\xfe", b"k" * 256):
        status, headers, content = await raw_request(
            app,
            "POST",
            b"/inventory/purchase",
            [KEY, (b"content-type", b"application/json"), (b"idempotency-key", value)],
            body,
        )
        assert status == 422, (value, content)
        assert problem_of(status, headers, content)["type"] == "/problems/validation-error"
        assert_no_line_breaks(headers)


async def test_no_path_trick_reaches_stock_without_a_key(app: FastAPI, stocked: Any) -> None:
    for raw_path in (
        b"/health/../inventory/7",
        b"/health/..%2Finventory%2F7",
        b"//inventory/7",
        b"/./inventory/7",
        b"/INVENTORY/7",
        b"/%69nventory/7",
        b"/inventory%2F7",
        b"/inventory/7%2F..%2F..%2Fhealth",
    ):
        status, headers, body = await raw_request(app, "GET", raw_path, [])
        assert status in (401, 404), (raw_path, status, body)
        problem_of(status, headers, body)


async def test_dot_segments_and_encoded_slashes_in_product_ids_are_4xx(
    app: FastAPI, stocked: Any
) -> None:
    for raw_path, status in [
        (b"/inventory/..", 422),
        (b"/inventory/%2E%2E", 422),
        (b"/inventory/.hidden", 422),
        (b"/inventory/7%2F8", 404),
        (b"/inventory/..%2F7", 404),
        (b"/inventory/7/../7", 404),
        (b"/inventory/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404),
    ]:
        for method, body in (("GET", b""), ("PUT", b'{"quantity": 9}'), ("DELETE", b"")):
            answer = await raw_request(
                app, method, raw_path, [KEY, (b"content-type", b"application/json")], body
            )
            assert answer[0] == status, (method, raw_path, answer)
            problem_of(*answer)


# --- query strings ------------------------------------------------------------------------


async def test_five_thousand_product_ids_in_a_query_are_422(app: FastAPI, stocked: Any) -> None:
    # Past httpx's URL limit (and uvicorn's request-line limit): straight into the app.
    query = "&".join(f"product_id={n}" for n in range(5000)).encode()
    answer = await raw_request(app, "GET", b"/inventory?" + query, [KEY])
    assert answer[0] == 422
    assert problem_of(*answer)["type"] == "/problems/validation-error"


async def test_five_hundred_product_ids_are_a_batch_look_up(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    params = tuple(("product_id", str(n)) for n in range(500))
    response = await client.get("/inventory", params=params)
    assert response.status_code == 200
    assert [item["product_id"] for item in response.json()["items"]] == ["7"]


async def test_thousands_of_unknown_query_parameters_are_ignored(
    app: FastAPI, stocked: Any
) -> None:
    query = "&".join(f"p{n}=xxxxxxxxxx" for n in range(5000)).encode()
    status, _, body = await raw_request(app, "GET", b"/inventory/7?" + query, [KEY])
    assert status == 200
    assert json.loads(body)["quantity"] == 3


async def test_malformed_query_values_are_422(client: httpx.AsyncClient, stocked: Any) -> None:
    for query in (
        "limit=1e3",
        "limit=%00",
        "limit=-1",
        "max_quantity=NaN",
        "limit=99999999999999999999999",
        "cursor=%FF%FE",
    ):
        assert_refused(await client.get(f"/inventory?{query}"), query)


# --- numbers: every one the API takes fits the column it reaches -----------------------------

IF_MATCH_ROUTES = [
    ("PUT", "/inventory/7", b'{"quantity": 9}'),
    ("DELETE", "/inventory/7", b""),
    ("POST", "/inventory/7/adjustments", b'{"delta": 1, "reason": "r"}'),
]


async def test_if_match_beyond_the_version_column_is_422(app: FastAPI, stocked: Any) -> None:
    versions = [str(2**31), str(2**32 + 1), "9" * 10, "9" * 11, "9" * 18, "0", "٣", "１２", "²"]
    for value in versions:
        for method, path, body in IF_MATCH_ROUTES:
            for etag in (f'"{value}"', f'W/"{value}"'):
                headers = [KEY, (b"content-type", b"application/json")]
                answer = await raw_request(
                    app, method, path.encode(), [*headers, (b"if-match", etag.encode())], body
                )
                assert answer[0] == 422, (method, etag, answer)
                assert problem_of(*answer)["type"] == "/problems/validation-error"


async def test_the_largest_version_is_a_precondition_that_fails(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    for method, path, body in IF_MATCH_ROUTES:
        headers = {"If-Match": f'"{2**31 - 1}"', **JSON}
        response = await client.request(method, path, content=body, headers=headers)
        assert_problem(response, 412, "version-mismatch")


def _integer_schemas(node: Any, document: dict[str, Any], seen: set[str]) -> list[Any]:
    """Every integer schema reachable from `node`, through `$ref`s."""
    if isinstance(node, list):
        return [found for item in node for found in _integer_schemas(item, document, seen)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _integer_schemas(document["components"]["schemas"][name], document, seen)
    found = [node] if node.get("type") == "integer" else []
    return found + [s for value in node.values() for s in _integer_schemas(value, document, seen)]


async def test_every_integer_the_api_takes_is_bounded_in_the_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    inputs = [
        (f"{method} {path}", part)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for part in (operation.get("parameters", []), operation.get("requestBody", {}))
    ]
    integers = [
        (where, schema)
        for where, part in inputs
        for schema in _integer_schemas(part, document, set())
    ]
    assert integers  # limit, max_quantity, quantity, delta, …
    for where, schema in integers:
        assert {"minimum", "maximum"} <= schema.keys(), (where, schema)
        assert -(2**63) <= schema["minimum"] <= schema["maximum"] <= 2**63 - 1, (where, schema)


async def test_integers_in_queries_are_ascii_digits_within_range(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    for query in ("limit=٣", "limit=１２", "max_quantity=²", "max_quantity=1000000001"):
        assert_refused(await client.get(f"/inventory?{query}"), query)


# --- NUL and other strings that must never reach a database ----------------------------------


async def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the API, as its OpenAPI document describes it."""
    async with client_for(app) as http:
        document = (await http.get("/openapi.json")).json()
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


async def test_nul_in_any_path_parameter_is_404_or_422(app: FastAPI, stocked: Any) -> None:
    operations = [op for op in await _operations(app) if "{" in op[1]]
    assert len(operations) >= 7
    for method, path, _ in operations:
        for segment in ("a%00b", "%00", "7%00"):
            raw_path = re.sub(r"\{[^}]+\}", segment, path).encode()
            headers = [KEY, (b"content-type", b"application/json")]
            answer = await raw_request(app, method, raw_path, headers, b"{}")
            assert answer[0] in (404, 422), (method, raw_path, answer)
            problem_of(*answer)


async def test_nul_in_any_query_parameter_is_422(app: FastAPI, stocked: Any) -> None:
    # Ids that name something, so that the query is what the answer is about.
    async with client_for(app) as http:
        endpoint = await http.post(
            "/webhooks",
            json={"url": "https://93.184.216.34/hook", "events": ["*"]},
            headers={"X-API-KEY": API_KEY},
        )
    assert endpoint.status_code == 201, endpoint.text
    ids = {"endpoint_id": endpoint.json()["id"]}
    checked = 0
    for method, path, operation in await _operations(app):
        queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        raw_path = re.sub(r"\{([^}]+)\}", lambda m: ids.get(m[1], "7"), path).encode()
        for name in queries:
            for value in (b"a%00b", b"%00", b"7%00"):
                query = name.encode() + b"=" + value
                answer = await raw_request(app, method, raw_path + b"?" + query, [KEY])
                assert answer[0] == 422, (path, query, answer)
                problem_of(*answer)
                checked += 1
    assert checked >= 15


async def test_purchase_ids_that_are_not_uuids_are_404(
    client: httpx.AsyncClient, stocked: Any
) -> None:
    for purchase_id in ("a%00b", "x" * 36, "00000000-0000-0000-0000-00000000000G", "%EF%BC%91"):
        for method, suffix in (("GET", ""), ("POST", "/cancel")):
            response = await client.request(method, f"/inventory/purchases/{purchase_id}{suffix}")
            assert_refused(response, (method, purchase_id), 404, "not-found")


# --- cursors: signed with a key anyone can read, so checked like any input ------------------


async def _movements_cursor(client: httpx.AsyncClient, product_id: str) -> str:
    for delta in (1, 1):
        await client.post(
            f"/inventory/{product_id}/adjustments", json={"delta": delta, "reason": "r"}
        )
    page = (await client.get(f"/inventory/{product_id}/movements", params={"limit": 1})).json()
    cursor: str = page["next_cursor"]
    return cursor


async def test_forged_cursor_positions_are_422(client: httpx.AsyncClient, db: Database) -> None:
    await make_stock(db, "7", 3)
    stock_scope = list_scope("stock", product_ids=[], max_quantity=None)
    movements_scope = list_scope("movements", product_id="7")
    stock_positions: tuple[object, ...] = ([1], 1e30, 7, None, {}, True, "", "a\x00b", "x" * 65)
    stock_positions += ("-x", "ü")
    movement_positions: tuple[object, ...] = ("abc", [1], 1e30, 10**30, 2**63, -1, 0, True)
    movement_positions += (None, 1.5, "7", {})
    forged: list[tuple[str, str, object]] = [
        *[("/inventory", stock_scope, position) for position in stock_positions],
        *[("/inventory/7/movements", movements_scope, position) for position in movement_positions],
    ]
    for path, scope, position in forged:
        response = await client.get(path, params={"cursor": encode_cursor(scope, position)})
        assert_refused(response, (path, position))
    # The same forgery with a position the list could have issued is an ordinary page.
    response = await client.get("/inventory", params={"cursor": encode_cursor(stock_scope, "6")})
    assert [item["product_id"] for item in response.json()["items"]] == ["7"]


async def test_a_cursor_of_another_list_is_422(client: httpx.AsyncClient, db: Database) -> None:
    for product_id in ("7", "8", "9"):
        await make_stock(db, product_id, 0)
    seven = await _movements_cursor(client, "7")
    assert (await client.get("/inventory/7/movements", params={"cursor": seven})).status_code == 200
    assert_refused(await client.get("/inventory/8/movements", params={"cursor": seven}), "8")

    low = (await client.get("/inventory", params={"max_quantity": 0, "limit": 1})).json()
    low_cursor = low["next_cursor"]
    assert low_cursor is not None
    other_lists: tuple[dict[str, str | int], ...] = (
        {"product_id": "9"},
        {},
        {"max_quantity": 1},
        {"max_quantity": 0, "product_id": "9"},
    )
    for params in other_lists:
        response = await client.get("/inventory", params={**params, "cursor": low_cursor})
        assert_refused(response, params)
    assert_refused(await client.get("/inventory/7/movements", params={"cursor": low_cursor}), 7)
    assert_refused(await client.get("/inventory", params={"cursor": seven}), "stock")


# --- headers: blanks around a value are not part of it (RFC 9110 §5.5) ------------------------

PADS = [b" ", b"  ", b"\t", b" \t ", b"\t\t"]


async def test_blanks_around_header_values_are_trimmed_everywhere(
    app: FastAPI, db: Database
) -> None:
    await make_stock(db, "7", 3)
    json_type = (b"content-type", b"application/json")
    for pad in PADS:
        for key in (API_KEY.encode() + pad, pad + API_KEY.encode(), pad + API_KEY.encode() + pad):
            status, headers, _ = await raw_request(
                app, "GET", b"/inventory/7", [(b"x-api-key", key), (b"x-request-id", b"r-1" + pad)]
            )
            assert status == 200, (key, status)
            assert dict(headers)[b"x-request-id"] == b"r-1"
    version = 1
    for pad in PADS:
        etag = pad + f'"{version}"'.encode() + pad
        status, headers, body = await raw_request(
            app,
            "PUT",
            b"/inventory/7",
            [KEY, (b"content-type", b"application/json" + pad), (b"if-match", etag)],
            b'{"quantity": 4}',
        )
        assert status == 200, (etag, body)
        version += 1
        assert dict(headers)[b"etag"] == f'"{version}"'.encode()
    status, _, _ = await raw_request(
        app,
        "PUT",
        b"/inventory/8",
        [KEY, json_type, (b"if-none-match", b" *\t")],
        b'{"quantity": 1}',
    )
    assert status == 201
    adjustment = b'{"delta": 1, "reason": "r"}'
    answers = [
        await raw_request(
            app,
            "POST",
            b"/inventory/7/adjustments",
            [KEY, json_type, (b"idempotency-key", key)],
            adjustment,
        )
        for key in (b"key-1", b"key-1 ", b"\tkey-1", b" key-1\t")
    ]
    assert [status for status, _, _ in answers] == [200] * 4
    assert [dict(headers).get(b"idempotent-replayed") for _, headers, _ in answers] == [
        None,
        b"true",
        b"true",
        b"true",
    ]
    assert await quantity_of(db, "7") == 5
