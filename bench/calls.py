"""`python -m bench.calls`: the Python function calls one request costs, counted in-process.

Throughput on a shared 2-core machine moves by ±50 % from one run to the next; the number of
Python calls a request makes does not. Each request here goes through the whole ASGI app
(middleware, routing, validation, database, products look-up) but not through a socket. The
calls of N sequential requests after a warm-up are counted on every thread of the process
(the event loop's, and the SQLite writer's that runs the other half of a write), as cProfile
counts them (Python functions and built-ins); the same is done for the ceilings of
`make bench`, so the table reads as "how much more work than the ceiling".

The service runs at its default settings (LOG_LEVEL=INFO, JSON lines written to a file as to
a pipe in production); the WARNING column is the same without the INFO lines. Calls are not
time (a call into C may be long), but a cost that only moves when the code does.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import FrameType
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


class CallCounter:
    """Counts function calls on every thread, by thread name, while `counting`.

    Installed before the app starts, so the threads it starts (the SQLite writer, the thread
    pool) have it from their first call: a call is a `call` event (a Python function or a
    coroutine resumed) or a `c_call` (a built-in), the calls cProfile counts.
    """

    def __init__(self) -> None:
        self.counting = False
        self.calls: Counter[str] = Counter()

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if self.counting and event in ("call", "c_call"):
            self.calls[threading.current_thread().name] += 1

    @contextmanager
    def installed(self) -> Iterator[None]:
        threading.setprofile(self)
        sys.setprofile(self)
        try:
            yield
        finally:
            sys.setprofile(None)
            threading.setprofile(None)


async def calls_per_request(
    app: ASGIApp, counter: CallCounter, scenario: str, count: int
) -> dict[str, float]:
    """Calls per request of `scenario`, by thread."""
    method, path, body, headers, _ = REQUESTS[scenario]
    for _ in range(20):  # caches, pools and compiled statements warm up first
        status = await call(app, method, path, body, headers)
    if status >= 300:
        raise RuntimeError(f"{scenario} answered {status}")
    counter.calls.clear()
    counter.counting = True
    for _ in range(count):
        await call(app, method, path, body, headers)
    counter.counting = False
    return {thread: calls / count for thread, calls in counter.calls.items()}


async def measure(app: Any, scenarios: list[str], count: int) -> dict[str, dict[str, float]]:
    """Calls per request of each scenario, by thread, inside the app's lifespan."""
    counter = CallCounter()
    with counter.installed():
        async with app.router.lifespan_context(app):
            return {s: await calls_per_request(app, counter, s, count) for s in scenarios}


def _service(log: Path, count: int) -> dict[str, dict[str, float]]:
    """The service's calls, its log lines appended to `log` (a file, as in production)."""
    from app.main import create_app

    with log.open("a") as output, redirect_stdout(output):
        return asyncio.run(measure(create_app(), list(REQUESTS), count))


def _service_at(log_level: str, log: Path, count: int) -> dict[str, dict[str, float]]:
    """The same in a process of its own: a process configures its logging once."""
    command = [sys.executable, "-m", "bench.calls", "--service-only", "--requests", str(count)]
    command += ["--log", str(log)]
    answer = subprocess.run(
        command,
        env={**os.environ, "LOG_LEVEL": log_level},
        capture_output=True,
        text=True,
        check=True,
    )
    by_scenario: dict[str, dict[str, float]] = json.loads(answer.stdout)
    return by_scenario


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
    parser.add_argument("--service-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.service_only:  # the environment is the parent's
        print(json.dumps(_service(args.log, args.requests)))
        return
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
            "LOG_FORMAT": "json",
        }
        log = Path(tmp) / "service.log"
        service = _service_at("INFO", log, args.requests)
        quiet = _service_at("WARNING", log, args.requests)
        ceilings: dict[str, dict[str, float]] = {}
        for name, module in CEILINGS.items():
            answered = [s for s, request in REQUESTS.items() if name in request[4]]
            app = importlib.import_module(module).app
            ceilings[name] = {
                s: sum(by_thread.values())
                for s, by_thread in asyncio.run(measure(app, answered, args.requests)).items()
            }
    print(
        f"Python calls per request, every thread, {args.engine}, {args.requests} sequential "
        "requests each; the service at its defaults (INFO), and at LOG_LEVEL=WARNING:"
    )
    print(
        "| scenario | service (INFO) | of which loop thread | other threads | WARNING "
        "| ceiling | ceiling calls | service ÷ ceiling |"
    )
    print("|---|--:|--:|--:|--:|---|--:|--:|")
    for scenario, by_thread in service.items():
        calls = sum(by_thread.values())
        loop = by_thread.get("MainThread", 0.0)
        warning = sum(quiet[scenario].values())
        head = f"| {scenario} | {calls:,.0f} | {loop:,.0f} | {calls - loop:,.0f} | {warning:,.0f}"
        rows = [
            f"{name} | {c[scenario]:,.0f} | {calls / c[scenario]:.1f}"
            for name, c in ceilings.items()
            if scenario in c
        ]
        for row in rows or ["— | — | —"]:
            print(f"{head} | {row} |")


if __name__ == "__main__":
    main()
