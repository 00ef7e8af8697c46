"""The service as its own OS processes: uvicorn with several workers on a loopback port.

A process started here sees only the environment its caller built and runs in an empty
directory of its own: the service reads `.env` from its working directory, and neither a
developer's `.env` in the project root nor their shell's variables may reach it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def environment(**values: str) -> dict[str, str]:
    """The whole environment of a process a test or a tool starts: `values`, the project on
    the import path and the PATH, and nothing else of the caller's."""
    return {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(PROJECT_ROOT)} | values


@functools.cache
def empty_directory() -> Path:
    """A working directory with no `.env` in it, removed when this process exits."""
    directory = Path(tempfile.mkdtemp(prefix="inventory-processes-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def start(command: list[str], env: dict[str, str], **options: Any) -> subprocess.Popen[bytes]:
    """`command` with exactly the environment `env`, in `empty_directory()`."""
    return subprocess.Popen(command, cwd=empty_directory(), env=env, **options)


def free_port() -> int:
    """A loopback port nobody listens on (at the moment of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def serving(app: ASGIApp, **config: Any) -> AsyncIterator[tuple[str, int]]:
    """`app` (its lifespan already running) behind a real uvicorn on a loopback port, in
    this event loop; yields the host and port. `config` is more uvicorn settings."""
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "log_config": None,
        "lifespan": "off",
    }
    server = uvicorn.Server(uvicorn.Config(app, **(settings | config)))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@contextmanager
def running_service(
    database_url: str, *, workers: int, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start uvicorn with `workers` processes; yield its base URL; stop it by its PID."""
    server, base_url = start_service(database_url, workers=workers, env=env)
    try:
        yield base_url
    finally:
        stop_service(server)


def start_service(
    database_url: str,
    *,
    workers: int,
    env: dict[str, str] | None = None,
    port: int | None = None,
    up: str = "/ready",
) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn with the settings `DATABASE_URL` and `env` alone, and wait until every
    worker answers 200 at `up`."""
    port = port or free_port()
    server = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--timeout-keep-alive",
            "30",
        ],
        environment(DATABASE_URL=database_url, LOG_LEVEL="WARNING", **(env or {})),
        start_new_session=True,  # its own process group, so a crash can take every worker
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(server, f"{base_url}{up}", workers)
    except BaseException:
        stop_service(server)
        raise
    return server, base_url


def stop_service(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_service(server)


def kill_service(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and all its workers, as a power cut would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)


def _wait_until_up(server: subprocess.Popen[bytes], up_url: str, workers: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited with {server.returncode} while starting")
        try:
            # Every worker must be serving, not just the first one up.
            if all(httpx.get(up_url, timeout=1).status_code == 200 for _ in range(workers * 3)):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready within 120 s")
