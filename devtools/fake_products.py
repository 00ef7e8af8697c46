"""A real products service of our own, over HTTP on 127.0.0.1, for integration tests and demos.

In tests it runs in a background thread (see the `fake_products` fixture) and each test
switches how it behaves. Standalone it serves a small demo catalog:

    python -m devtools.fake_products --port 8003
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

BodyShape = Literal["plain", "data", "jsonapi"]
# How a catalog spells ids: as asked, as integers (`01` is product 1, `abc` a 422), or in
# lower case (an upper-case UUID finds the lower-case one).
IdStyle = Literal["as-asked", "integer", "lowercase"]

DEMO_CATALOG: dict[str, dict[str, Any]] = {
    "1": {"name": "Mug", "price": 9.5},
    "2": {"name": "Teapot", "price": 24.0},
    "7": {"name": "Tea towel", "price": 4.25},
    "42": {"name": "Towel", "price": 12.9},
    "sku-blue-pen": {"name": "Blue pen", "price": 1.2},
}

_START_TIMEOUT_SECONDS = 5.0
_STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


class FakeProductsServer:
    """A products service whose behaviour a test switches while it runs.

    Modes combine in this order on every request (any path, `/health` included):
    record it; wait when slow; 401 when a key is required and missing or wrong; 503 (or
    the chosen status) while flaky failures are left; the fixed status when one is set;
    then the real answer: `{prefix}{id}` (`/products/{id}` unless told otherwise) from
    `catalog` in the chosen body shape (or a non-JSON body, or raw bytes of the test's),
    with the id read in the chosen style, 404 for unknown ids, `/health` 200.
    """

    def __init__(
        self,
        catalog: Mapping[str, dict[str, Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._initial_catalog = dict(DEMO_CATALOG if catalog is None else catalog)
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._generation = 0
        self.most_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET"])])
        self.reset()

    # --- switching behaviour -------------------------------------------------------------

    def reset(self) -> None:
        """Plain bodies, no failures, no delay, no key, the first catalog, no recorded requests."""
        with self._lock:
            self.catalog: dict[str, dict[str, Any]] = dict(self._initial_catalog)
            self._requests.clear()
            self.shape: BodyShape = "plain"
            self.status: int | None = None
            self.failures_left = 0
            self.failure_status = 503
            self.delay_seconds = 0.0
            self.not_json = False
            self.required_api_key: str | None = None
            self.public_health = False
            self.prefix = "/products/"
            self.knows_every_id = False
            self.id_style: IdStyle = "as-asked"
            self.raw: tuple[bytes, dict[str, str]] | None = None
            # Slow handlers of an earlier test may still be waiting: they no longer count.
            self._generation += 1
            self._in_flight = self.most_in_flight = 0

    def serve_shape(self, shape: BodyShape) -> None:
        self.shape = shape

    def fail_with(self, status: int) -> None:
        """Answer every request with this status (500, 401, 404…)."""
        self.status = status

    def fail_first(self, count: int, status: int = 503) -> None:
        """Flaky: the next `count` requests get `status`, the ones after a real answer."""
        with self._lock:
            self.failures_left = count
            self.failure_status = status

    def be_slow(self, seconds: float) -> None:
        """Hold every answer this long; teardown cuts the wait short."""
        self.delay_seconds = seconds

    def answer_not_json(self) -> None:
        self.not_json = True

    def require_api_key(self, key: str, *, public_health: bool = False) -> None:
        """Answer 401 without this key; `public_health`: except on `/health`, as some
        catalogs do."""
        self.required_api_key = key
        self.public_health = public_health

    def serve_at(self, prefix: str) -> None:
        """Products under this path prefix (`/api/productos/`) instead of `/products/`."""
        self.prefix = prefix

    def read_ids(self, style: IdStyle) -> None:
        self.id_style = style

    def answer_raw(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer every known product 200 with these bytes (and headers), whatever they hold."""
        self.raw = (body, dict(headers or {}))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    # --- running ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the fake products server is not running")
        port = self._socket.getsockname()[1]
        return f"http://{self._host}:{port}"

    def start(self) -> None:
        # Binding here, before uvicorn starts, makes the port known and ours at once.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self._host, self._requested_port))
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, http="h11"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="fake-products",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake products server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        # Wake slow handlers, so shutdown need not wait for them.
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_SECONDS)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self._loop = self._wake = None

    def __enter__(self) -> FakeProductsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- answering -------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            generation = self._generation
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                if generation == self._generation:
                    self._in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    request.method, path, {k.lower(): v for k, v in request.headers.items()}
                )
            )
            flaky = self.failures_left > 0
            if flaky:
                self.failures_left -= 1
        if self.delay_seconds > 0:
            await self._pause(self.delay_seconds)
        if (
            self.required_api_key is not None
            and request.headers.get("x-api-key") != self.required_api_key
            and not (self.public_health and path == "/health")
        ):
            return JSONResponse({"detail": "bad or missing X-API-KEY"}, status_code=401)
        if flaky:
            return JSONResponse({"detail": "flaky"}, status_code=self.failure_status)
        if self.status is not None:
            return JSONResponse({"detail": "told to fail"}, status_code=self.status)
        if path == "/health":
            return JSONResponse({"status": "ok"})
        asked = path.removeprefix(self.prefix)
        if asked == path or "/" in asked:
            return JSONResponse({"detail": "no such route"}, status_code=404)
        if self.not_json:
            return PlainTextResponse("<html>upstream error page</html>", media_type="text/html")
        if self.id_style == "integer" and not asked.isdigit():
            return JSONResponse({"detail": "id must be an integer"}, status_code=422)
        product_id = {
            "as-asked": asked,
            "integer": str(int(asked)) if asked.isdigit() else asked,
            "lowercase": asked.lower(),
        }[self.id_style]
        product = self.catalog.get(product_id)
        if product is None and self.knows_every_id:
            product = {"name": f"Product {product_id}", "price": 1.5}
        if product is None:
            return JSONResponse(
                {"errors": [{"status": "404", "title": "Not found"}]}, status_code=404
            )
        if self.raw is not None:
            body, headers = self.raw
            return Response(body, media_type="application/json", headers=headers)
        answered: str | int = int(product_id) if self.id_style == "integer" else product_id
        return JSONResponse(self._body(answered, product), media_type=self._media_type())

    def _body(self, product_id: str | int, product: dict[str, Any]) -> dict[str, Any]:
        if self.shape == "data":
            return {"data": {"id": product_id, **product}}
        if self.shape == "jsonapi":
            return {"data": {"id": product_id, "type": "products", "attributes": product}}
        return {"id": product_id, **product}

    def _media_type(self) -> str:
        return "application/vnd.api+json" if self.shape == "jsonapi" else "application/json"

    async def _pause(self, seconds: float) -> None:
        if self._wake is None:  # made here, so it belongs to the server's event loop
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a demo products catalog over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--shape", choices=["plain", "data", "jsonapi"], default="plain")
    parser.add_argument("--api-key", help="require this X-API-KEY (401 otherwise)")
    parser.add_argument(
        "--every-id", action="store_true", help="know every product id asked about (fuzzing)"
    )
    args = parser.parse_args(argv)
    fake = FakeProductsServer(host=args.host, port=args.port)
    fake.serve_shape(args.shape)
    if args.api_key:
        fake.require_api_key(args.api_key)
    fake.knows_every_id = args.every_id
    print(
        f"fake products service on http://{args.host}:{args.port}, products: {sorted(fake.catalog)}"
    )
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
