"""The server's own limits, through a real uvicorn on loopback: oversized headers and
requests that never finish arriving are answered and closed, not held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from app.server import BoundedHttpToolsProtocol
from devtools.servers import serving
from tests.support.service import API_KEY

READ_TIMEOUT = 0.5


class QuickProtocol(BoundedHttpToolsProtocol):
    """The same protocol with a short clock, so a test waits half a second, not thirty."""

    read_timeout = READ_TIMEOUT
    max_header_bytes = 8 * 1024


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[tuple[str, int]]:
    async with serving(app, http=QuickProtocol) as address:
        yield address


async def exchange(address: tuple[str, int], *chunks: bytes) -> bytes:
    """Send the chunks, then read until the server closes the connection (bounded)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT * 10):
            return await reader.read()
    finally:
        writer.close()


def request(method: bytes, path: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, path), b"host: test", b"x-api-key: " + API_KEY.encode()]
    lines += [*headers, b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_headers_over_the_limit_are_431_before_they_are_read_whole(
    server: tuple[str, int],
) -> None:
    big = b"x-big: " + b"a" * (16 * 1024)
    for chunks in ([request(b"GET", b"/health", big)], [b"GET /health HTTP/1.1\r\n" + big]):
        answer = await exchange(server, *chunks)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert b"application/problem+json" in answer


async def test_a_request_that_never_finishes_arriving_is_408_and_closed(
    server: tuple[str, int],
) -> None:
    started = asyncio.get_running_loop().time()
    for chunks in (
        [],  # a connection that sends nothing
        [b"GET /health HTTP/1.1\r\nhost: te"],  # headers that never end
        [request(b"PUT", b"/inventory/7", b"content-type: application/json")[:-2]],
        [request(b"PUT", b"/inventory/7", body=b"{" * 50)[:-30]],  # a body that stops short
    ):
        answer = await exchange(server, *chunks)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert asyncio.get_running_loop().time() - started < READ_TIMEOUT * 4 * 4


async def test_ordinary_requests_are_not_refused(server: tuple[str, int]) -> None:
    fits = b"x-fits: " + b"a" * (7 * 1024)
    assert (await exchange(server, request(b"GET", b"/health", fits))).startswith(b"HTTP/1.1 200")
    body = b'{"quantity": 1, "reason": "' + b"x" * 150 + b'"}'
    answer = await exchange(
        server, request(b"PUT", b"/inventory/7", b"content-type: application/json", body=body)
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    # A body far larger than the header limit, sent in one go, is not counted as headers.
    large = b'{"quantity": 1, "padding": "' + b"x" * (512 * 1024) + b'"}'
    answer = await exchange(
        server, request(b"PUT", b"/inventory/8", b"content-type: application/json", body=large)
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
