"""`inventory serve`: the process supervisor of the HTTP service."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import StartupFailure, between, configured_settings, one_line_failures


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on, 1 to 65535.", callback=between(1, 65535))
    ] = 8002,
    workers: Annotated[
        int, typer.Option(help="Worker processes, at least 1.", callback=between(1))
    ] = 1,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds in-flight requests get to finish on shutdown, at least 1.",
            callback=between(1),
        ),
    ] = 30,
) -> None:
    """Run the HTTP service (granian).

    On SIGTERM or Ctrl-C it stops accepting connections, lets in-flight requests finish
    (up to --graceful-timeout seconds) and then closes the database pool. The server's own
    access log is off: the service writes one `http.request` line per request itself.
    """
    from app.server import build_server

    # The supervisor's lines go where its workers' go.
    settings = configured_settings(log_stream="stdout")
    with one_line_failures():
        _check_port_is_free(host, port)
    server = build_server(
        log_level=settings.log_level,
        host=host,
        port=port,
        workers=workers,
        graceful_timeout=graceful_timeout,
    )
    with _metrics_directory(workers):
        server.serve()


def _check_port_is_free(host: str, port: int) -> None:
    """The server would report a taken port in several log lines; we say it in one line
    before starting. Bound as servers bind (SO_REUSEADDR), so a port in TIME_WAIT is not
    reported."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise StartupFailure(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise StartupFailure(f"cannot listen on {host}:{port}: {error.strerror}") from None


@contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """Multiprocess metrics for several workers: a fresh directory, removed at exit.

    A directory named by the operator in PROMETHEUS_MULTIPROC_DIR is used instead and
    emptied first, as prometheus-client requires between runs.
    """
    from app.core.metrics import MULTIPROCESS_ENV

    named = os.environ.get(MULTIPROCESS_ENV)
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        for stale in Path(named).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="inventory-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(directory, ignore_errors=True)
