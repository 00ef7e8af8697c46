"""The server's own limits, through the granian server of `inventory serve` on loopback:
oversized headers and requests that never finish arriving are refused and closed, not held."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import databases
from devtools.servers import PROJECT_ROOT, free_port, stop_service
from tests.support.service import API_KEY

READ_TIMEOUT = 0.5
MAX_HEADER_BYTES = 8 * 1024
# `build_server` as `inventory serve` calls it, with a short clock and a small header limit,
# so a test waits half a second, not thirty.
SERVE = (
    "from app.server import build_server; "
    "build_server(log_level='WARNING', host='127.0.0.1', port={port}, workers=1, "
    f"graceful_timeout=5, max_header_bytes={MAX_HEADER_BYTES}, "
    f"header_read_timeout={READ_TIMEOUT}).serve()"
)


@pytest.fixture
def server(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": databases.fresh_sqlite(sqlite_template, tmp_path),
        "API_KEY": API_KEY,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE.format(port=port)],
        cwd=tmp_path,  # no `.env` here
        env=environment,
        start_new_session=True,
    )
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/health")
        yield "127.0.0.1", port
    finally:
        stop_service(process)


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url} within 60 s")


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
    big = b"x-big: " + b"a" * (2 * MAX_HEADER_BYTES)
    for chunks in ([request(b"GET", b"/health", big)], [b"GET /health HTTP/1.1\r\n" + big]):
        answer = await exchange(server, *chunks)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


async def test_headers_that_never_finish_arriving_are_closed_on(server: tuple[str, int]) -> None:
    started = asyncio.get_running_loop().time()
    for chunks in (
        [],  # a connection that sends nothing
        [b"GET /health HTTP/1.1\r\nhost: te"],  # headers that never end
    ):
        assert await exchange(server, *chunks) == b""  # closed, before the read's own bound
    assert asyncio.get_running_loop().time() - started < READ_TIMEOUT * 10


async def test_ordinary_requests_are_not_refused(server: tuple[str, int]) -> None:
    fits = b"x-fits: " + b"a" * (MAX_HEADER_BYTES - 1024)
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
