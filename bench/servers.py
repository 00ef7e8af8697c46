"""Processes the benchmark starts: ASGI servers (uvicorn, granian) and wrk. Each is stopped by
its own pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # load goes to the loopback interface only
SCRIPT = ROOT / "bench" / "wrk" / "scenario.lua"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    health: str


# The ASGI servers the benchmark can run an app on; the service and its bare ceiling are
# always run on the same one, so that a ratio compares apps, not servers.
ServerKind = Literal["uvicorn", "granian"]
SERVER_KINDS: tuple[ServerKind, ...] = ("uvicorn", "granian")


def server_command(kind: ServerKind, target: str, port: int, workers: int) -> list[str]:
    """`target` served on `kind` with the same flags for the service and the ceilings."""
    flags = ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    flags += ["--log-level", "warning"]
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, *flags, "--no-access-log"]
    return [sys.executable, "-m", "granian", "--interface", "asgi", target, *flags, "--no-ws"]


@contextmanager
def serve(
    name: str,
    target: str,
    *,
    workers: int,
    env: Mapping[str, str],
    health: str,
    kind: ServerKind = "uvicorn",
    command: list[str] | None = None,
    log: Path | None = None,
) -> Iterator[Server]:
    """`target` on a free loopback port (or `command`, given the port: the service's own
    `inventory serve`); its output appended to `log` when given, as a service's lines go to a
    file or a pipe in production, rather than to a terminal."""
    port = free_port()
    if command:
        argv = [*command, "--port", str(port)]
    else:
        argv = server_command(kind, target, port, workers)
    with open(log or os.devnull, "ab") as output:
        # Its own session, so that stopping it can reach its worker processes too.
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            start_new_session=True,
            stdout=output if log else None,
            stderr=output if log else None,
        )
    server = Server(name, f"http://{HOST}:{port}", process, health)
    try:
        settle(server, timeout=30.0)
        yield server
    finally:
        stop(process)


def uvicorn(
    name: str, target: str, *, workers: int, env: Mapping[str, str], health: str
) -> AbstractContextManager[Server]:
    """`target` on uvicorn: the fake catalog, the raw-SQL ceiling."""
    return serve(name, target, workers=workers, env=env, health=health)


@contextmanager
def receiver() -> Iterator[str]:
    """`bench.receiver` on a free loopback port; yields its webhook URL."""
    port = free_port()
    command = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                received(url)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"{url}/hook"
    finally:
        stop(process)


def received(url: str, *, distinct: bool = False) -> int:
    """How many webhooks the receiver at `url` (its base or hook URL) has answered, or how
    many distinct events they carried."""
    base = url.removesuffix("/hook")
    with urllib.request.urlopen(
        f"{base}/{'unique' if distinct else 'count'}", timeout=5
    ) as response:
        return int(response.read())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this process leads, nothing else
        process.wait(timeout=5)


def settle(server: Server, *, timeout: float = 60.0, quick: float = 0.1) -> None:
    """Wait until the server answers its health path within `quick` seconds: up, and done
    with the requests a finished wrk run left behind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        began = time.monotonic()
        try:
            with urllib.request.urlopen(server.url + server.health, timeout=timeout) as response:
                if response.status == 200 and time.monotonic() - began < quick:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not settle on {server.health} within {timeout}s")


def post_json(url: str, body: object, headers: Mapping[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@dataclass(frozen=True, slots=True)
class Load:
    connections: int
    seconds: float
    timeout_seconds: float = 10.0


def wrk(server: Server, load: Load, args: list[str]) -> dict[str, Any]:
    """One bounded wrk run, then a wait for the server to be idle; the figures from `done()`."""
    url = server.url
    command = ["wrk", "-t1", f"-c{load.connections}", f"-d{load.seconds:g}s"]
    command += [f"--timeout={load.timeout_seconds:g}s", "-s", str(SCRIPT), url, "--", *args]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=load.seconds + 60, check=False
    )
    settle(server)
    for line in finished.stdout.splitlines():
        if line.startswith("BENCH "):
            figures: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
            return figures
    raise RuntimeError(f"wrk printed no figures: {finished.stdout}\n{finished.stderr}")
