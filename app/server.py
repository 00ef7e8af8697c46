"""The HTTP server `inventory serve` runs: granian's ASGI interface, HTTP/1.1, with its limits.

- Request line and headers together are at most `MAX_HEADER_BYTES`; more is answered 431
  (granian's answer, without a body) and the connection closed, before the rest is read.
- Headers must arrive within `HEADER_READ_TIMEOUT_SECONDS` of a request's start (or of the
  connection's, for the first request); otherwise the connection is closed, which also
  closes a keep-alive connection idle that long. The body's own deadline is the service's
  (`BodyLimitMiddleware`: 408), so it holds on any server.
- A worker takes in at most `BACKPRESSURE` requests at once; more wait in the listen backlog,
  unread, rather than each holding memory in the worker. Below that the service sheds load
  itself (`MAX_REQUESTS_IN_PROGRESS`, default 1,000: 503 with `Retry-After`).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import MPServer  # what `granian.Granian` is on a CPython with a GIL

MAX_HEADER_BYTES = 64 * 1024
HEADER_READ_TIMEOUT_SECONDS = 30.0
BACKPRESSURE = 1024
APP = "app.main:app"

# granian's own lines go to the root logger, which `configure_logging` writes in LOG_FORMAT;
# its access log stays off: the service writes one `http.request` line per request itself.
_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": False}},
}


def build_server(
    *,
    log_level: str,
    host: str,
    port: int,
    workers: int,
    graceful_timeout: int,
    max_header_bytes: int = MAX_HEADER_BYTES,
    header_read_timeout: float = HEADER_READ_TIMEOUT_SECONDS,
) -> MPServer:
    """The server of `app.main:app`; `serve()` runs it until SIGTERM or Ctrl-C, then gives
    in-flight requests `graceful_timeout` seconds before it stops the workers.

    Its workers are spawned, not forked (granian follows the process's start method): each
    imports the app afresh, as under uvicorn, so nothing of the supervisor's state is
    inherited, prometheus-client's mode least of all (chosen when it is first imported,
    before `PROMETHEUS_MULTIPROC_DIR` may be set).
    """
    multiprocessing.set_start_method("spawn", force=True)
    return MPServer(
        APP,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        http=HTTPModes.http1,
        websockets=False,
        backpressure=BACKPRESSURE,
        http1_settings=HTTP1Settings(
            header_read_timeout=round(header_read_timeout * 1000),
            max_buffer_size=max_header_bytes,
        ),
        log_level=LogLevels(log_level.lower()),
        log_dictconfig=_LOGGING,
        log_access=False,
        workers_kill_timeout=graceful_timeout,
    )
