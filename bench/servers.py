"""Processes the benchmark starts: uvicorn servers and wrk. Each is stopped by its own pid."""

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@contextmanager
def uvicorn(
    name: str, target: str, *, workers: int, env: Mapping[str, str], health: str
) -> Iterator[Server]:
    """`uvicorn target` on a free loopback port, the same flags for the service and ceilings."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    # Its own session, so that stopping it can reach its worker processes too.
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    server = Server(name, f"http://{HOST}:{port}", process, health)
    try:
        settle(server, timeout=30.0)
        yield server
    finally:
        stop(process)


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
