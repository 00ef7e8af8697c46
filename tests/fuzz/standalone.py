"""`make fuzz`: schemathesis's command line over the whole API, as a client sees it.

For each engine (SQLite always; PostgreSQL too when TEST_POSTGRES_URL is set) it starts the
fake products catalog and the service on free loopback ports with a fresh, migrated
database, runs `st run` with the repository's schemathesis.toml, and stops both by their
PIDs whatever happens. The exit status is non-zero when any run failed. Arguments go to
`st run` as they are (`--seed 7`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from app.core import migrations
from devtools.databases import POSTGRES_URL, postgres_database, sqlite_url
from devtools.servers import PROJECT_ROOT, environment, free_port, start

API_KEY = "fuzz-key-0123456789"
PRODUCTS_API_KEY = "fuzz-products-key"
ST = Path(sys.executable).with_name("st")
# `st run`'s own `max-time` means "keep generating until then", not a bound: this is one.
RUN_SECONDS = 600


@contextmanager
def _process(command: list[str], env: dict[str, str], up_url: str) -> Iterator[None]:
    process = start(command, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[2]} exited with {process.returncode} while starting")
            try:
                httpx.get(up_url, timeout=1)  # any answer: it is listening
                break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{command[2]} did not answer within 60 s")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _database(engine: str) -> Iterator[str]:
    if engine == "postgresql":
        with postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="inventory-fuzz-") as directory:
        url = sqlite_url(Path(directory) / "fuzz.db")
        migrations.upgrade(url)
        yield url


def run(engine: str, st_arguments: list[str]) -> int:
    products_port, service_port = free_port(), free_port()
    with ExitStack() as stack:
        database_url = stack.enter_context(_database(engine))
        settings = environment(
            DATABASE_URL=database_url,
            API_KEY=API_KEY,
            PRODUCTS_SERVICE_URL=f"http://127.0.0.1:{products_port}",
            PRODUCTS_API_KEY=PRODUCTS_API_KEY,
            LOG_LEVEL="WARNING",
            FUZZ_API_KEY=API_KEY,
        )
        python = [sys.executable, "-m"]
        stack.enter_context(
            _process(
                [
                    *python,
                    "devtools.fake_products",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(products_port),
                    "--api-key",
                    PRODUCTS_API_KEY,
                    "--every-id",
                ],
                settings,
                f"http://127.0.0.1:{products_port}/health",
            )
        )
        base_url = f"http://127.0.0.1:{service_port}"
        stack.enter_context(
            _process(
                [*python, "tests.fuzz.service", "--port", str(service_port)],
                settings,
                f"{base_url}/health",
            )
        )
        print(f"fuzz: {engine} at {base_url}", flush=True)
        command = [str(ST), "run", f"{base_url}/openapi.json", *st_arguments]
        try:
            return subprocess.run(
                command, cwd=PROJECT_ROOT, env=settings, timeout=RUN_SECONDS
            ).returncode
        except subprocess.TimeoutExpired:
            print(f"fuzz: st run did not finish within {RUN_SECONDS} s", flush=True)
            return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # Every argument is `st run`'s: `--seed 7`, `--max-examples 100`, …
    _, st_arguments = parser.parse_known_args()
    engines = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
    failed = [engine for engine in engines if run(engine, st_arguments) != 0]
    print(
        f"fuzz: {', '.join(engines)}: " + (f"failed on {', '.join(failed)}" if failed else "passed")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
