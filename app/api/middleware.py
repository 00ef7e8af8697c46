"""Pure ASGI middleware: request ids, load shedding, HEAD and the body's limits of size and
time (API keys: `app.api.auth`).

They run before routing and body parsing, so an unauthenticated request is refused with
401 whatever its body, an oversized body is never read whole, and a body that stops arriving
does not hold its request forever, whatever server runs the app.
"""

from __future__ import annotations

import asyncio
import logging
import time

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import actor_of
from app.api.errors import problem_response
from app.core import metrics
from app.core.context import accept_request_id, request_id_var
from app.core.errors import Overloaded, PayloadTooLarge, ProblemError, RequestTimeout

logger = logging.getLogger("app.requests")
access_logger = structlog.get_logger("app.access")

MAX_BODY_BYTES = 1024 * 1024
BODY_READ_TIMEOUT_SECONDS = 30.0
# Probes and scrapes must answer however busy the process is: that is when they matter.
NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})
SHED_RETRY_AFTER_SECONDS = 1


class RequestContextMiddleware:
    """Trims header values, gives every request an id, echoes it, and turns an unexpected
    crash into a 500 problem.

    Being outermost, it also sees every answer whole: it writes the one access line
    (`http.request`) of each request and counts it in the metrics.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        # RFC 9110 §5.5: blanks around a field value are not part of it. Servers strip some
        # (leading ones) and not others, so every header the service reads is trimmed here.
        scope["headers"] = [(name, value.strip(b" \t")) for name, value in scope["headers"]]
        request_id = accept_request_id(Headers(scope=scope).get("x-request-id"))
        token = request_id_var.set(request_id)
        response_started = False
        status = 500  # if the response never starts, the client sees the connection fail

        async def send_with_id(message: Message) -> None:
            nonlocal response_started, status
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                error = ProblemError("The service failed to answer; the error was logged.")
                await problem_response(error)(scope, receive, send_with_id)
        finally:
            _record_access(scope, status, time.perf_counter() - started_at)
            request_id_var.reset(token)


def _record_access(scope: Scope, status: int, seconds: float) -> None:
    route = route_template(scope)
    metrics.observe_request(route=route, method=scope["method"], status=status, seconds=seconds)
    access_logger.info(
        "http.request",
        method=scope["method"],
        route=route or scope["path"],
        status=status,
        duration_ms=round(seconds * 1000, 2),
        actor=actor_of(scope),
    )


def route_template(scope: Scope) -> str | None:
    """The path template of the route that took the request; None when none did (an unknown
    path, or a request refused before routing: 401, 413)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


class LoadSheddingMiddleware:
    """Answers 503 `overloaded` at once when `limit` requests are already in progress.

    Past what the process can serve, a request waiting in line only grows everybody's wait;
    refused at once, its client can retry (`Retry-After`) or go to another instance.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.limit:
            metrics.count_shed_request()
            error = Overloaded(
                f"More than {self.limit} requests are in progress; try again shortly.",
                retry_after=SHED_RETRY_AFTER_SECONDS,
            )
            await problem_response(error)(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


class HeadMiddleware:
    """Answers `HEAD` as `GET` without the body (RFC 9110 §9.3.2), on every route.

    FastAPI's routes take only the methods they name, so without this a `HEAD` of any `GET`
    resource was 405. The request is routed as a `GET`; the method is set back to `HEAD`
    before the answer starts, so the server sends headers only and logs and metrics say HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                scope["method"] = "HEAD"
                await send(message)
            elif message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        scope["method"] = "GET"
        try:
            await self.app(scope, receive, send_headers_only)
        finally:
            scope["method"] = "HEAD"


class BodyLimitMiddleware:
    """Refuses request bodies over the limit with 413, whether declared or streamed, and
    bodies that have not arrived whole within `read_timeout` seconds with 408.

    The body is read here, up to the limit, and handed on whole: a body is at most 1 MiB,
    and this way the refusal happens before any route sees a byte of it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = BODY_READ_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem_response(self._too_large())(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.read_timeout):
                messages = await self._read_body(receive)
        except TimeoutError:
            late = RequestTimeout(
                "The request body did not arrive in time.", headers={"Connection": "close"}
            )
            await problem_response(late)(scope, receive, send)
            return
        if messages is None:
            await problem_response(self._too_large())(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The body as one message (or what ended it early); None when it is too large."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return [message]
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request bodies are limited to {self.max_bytes} bytes.")


def _replay(messages: list[Message], then: Receive) -> Receive:
    """Hands out the messages already read, then whatever the client sends next."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
