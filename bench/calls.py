"""`python -m bench.calls`: the Python function calls one request costs, counted in-process.

Throughput on a shared 2-core machine moves by ±50 % from one run to the next; the number of
Python calls a request makes does not. Each request here goes through the whole ASGI app
(middleware, routing, validation, database, products look-up) but not through a socket:
`cProfile` counts the calls of N sequential requests after a warm-up, and the same is done
for the ceilings of `make bench`, so the table reads as "how much more work than the ceiling".
Calls are not time (a call into C may be long), but a cost that only moves when the code does.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import os
import pstats
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import data
from bench.run import API_KEY, DEFAULT_POSTGRES, REPLAY_KEY
from bench.servers import uvicorn

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_PURCHASE = b'{"items":[{"product_id":"hot","quantity":1}],"reference":"bench"}'
_REPLAY = b'{"items":[{"product_id":"p1","quantity":1}],"reference":"bench"}'
CEILINGS = {"bare": "bench.ceilings.bare", "raw-sql": "bench.ceilings.raw_sql"}
# scenario: (method, path, body, extra headers, the ceilings that answer it)
REQUESTS: dict[str, tuple[str, str, bytes, list[tuple[bytes, bytes]], tuple[str, ...]]] = {
    "get-hot": ("GET", f"/inventory/{data.HOT}", b"", [], ("bare", "raw-sql")),
    "put": ("PUT", "/inventory/p1", b'{"quantity":500}', [], ("raw-sql",)),
    "purchase-hot": ("POST", "/inventory/purchase", _PURCHASE, [], ("raw-sql",)),
    "purchase-replay": (
        "POST",
        "/inventory/purchase",
        _REPLAY,
        [(b"idempotency-key", REPLAY_KEY.encode())],
        (),
    ),
}


async def call(app: ASGIApp, method: str, path: str, body: bytes, headers: list[Any]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"x-api-key", API_KEY.encode()),
            (b"content-type", b"application/json"),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the app asks again only to watch for a disconnect
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def calls_per_request(app: ASGIApp, scenario: str, count: int) -> float:
    method, path, body, headers, _ = REQUESTS[scenario]
    for _ in range(20):  # caches, pools and compiled statements warm up first
        status = await call(app, method, path, body, headers)
    if status >= 300:
        raise RuntimeError(f"{scenario} answered {status}")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(count):
        await call(app, method, path, body, headers)
    profile.disable()
    total: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return total / count


async def measure(app: Any, scenarios: list[str], count: int) -> dict[str, float]:
    """Calls per request of each scenario, inside the app's lifespan."""
    async with app.router.lifespan_context(app):
        return {s: await calls_per_request(app, s, count) for s in scenarios}


@contextmanager
def _database(engine: str, directory: Path) -> Iterator[str]:
    manager = (
        data.sqlite_databases(directory, 1)
        if engine == "sqlite"
        else data.postgres_databases(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES), 1)
    )
    with manager as (url,):
        asyncio.run(data.seed(url))
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="inventory-calls-") as tmp,
        uvicorn(
            "fake products", "bench.fake_catalog:app", workers=1, env={}, health="/health"
        ) as catalog,
        _database(args.engine, Path(tmp)) as url,
    ):
        os.environ |= {
            "DATABASE_URL": url,
            "RAW_DATABASE_URL": url,
            "API_KEY": API_KEY,
            "PRODUCTS_SERVICE_URL": catalog.url,
            "LOG_LEVEL": "WARNING",
        }
        from app.main import create_app

        service = asyncio.run(measure(create_app(), list(REQUESTS), args.requests))
        ceilings: dict[str, dict[str, float]] = {}
        for name, module in CEILINGS.items():
            answered = [s for s, request in REQUESTS.items() if name in request[4]]
            app = importlib.import_module(module).app
            ceilings[name] = asyncio.run(measure(app, answered, args.requests))
    print(f"Python calls per request, {args.engine}, {args.requests} sequential requests each:")
    print("| scenario | service | ceiling | ceiling calls | service ÷ ceiling |")
    print("|---|--:|---|--:|--:|")
    for scenario, calls in service.items():
        rows = [
            f"{name} | {c[scenario]:,.0f} | {calls / c[scenario]:.1f}"
            for name, c in ceilings.items()
            if scenario in c
        ]
        for row in rows or ["— | — | —"]:
            print(f"| {scenario} | {calls:,.0f} | {row} |")


if __name__ == "__main__":
    main()
