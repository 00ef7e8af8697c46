"""The `inventory` command, run in-process with typer's CliRunner against migrated databases."""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from granian.constants import Interfaces
from granian.server import MPServer
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from app import cli
from app.cli import serve
from app.core.database import Database
from app.core.metrics import MULTIPROCESS_ENV
from app.models import Movement
from app.server import BACKPRESSURE, HEADER_READ_TIMEOUT_SECONDS, MAX_HEADER_BYTES
from devtools import databases
from devtools.fake_products import FakeProductsServer
from tests.support.products import READINESS_PROBE
from tests.support.service import API_KEY

runner = CliRunner()


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment, as in a real run; no stray `.env` is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEYS", f"ops:{API_KEY}")
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)


@pytest.fixture
def url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def run(*args: str) -> Result:
    return runner.invoke(cli.cli, list(args))


def _movement_count(url: str) -> int:
    async def count() -> int:
        db = Database(url)
        try:
            counted = await db.read(lambda c: c.scalar(select(func.count()).select_from(Movement)))
            return int(counted or 0)
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_import_then_export_round_trips(url: str, tmp_path: Path) -> None:
    source = tmp_path / "stock.csv"
    source.write_text("product_id,quantity,reason\nb-2,20,delivery\na-1,10\n\n0,0\n")

    imported = run("import", str(source))
    exported = run("export")

    assert imported.exit_code == 0, imported.output
    assert "3 created, 0 updated, 0 unchanged" in imported.stdout
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.splitlines() == ["product_id,quantity", "0,0", "a-1,10", "b-2,20"]


def test_export_writes_a_file(url: str, tmp_path: Path) -> None:
    source = tmp_path / "stock.csv"
    source.write_text("x,1\n")
    run("import", str(source))

    result = run("export", str(tmp_path / "out.csv"))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").read_text().splitlines() == ["product_id,quantity", "x,1"]
    assert "exported 1 stock level\n" in result.stderr


def test_import_with_bad_rows_names_the_lines_and_changes_nothing(url: str, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("good,1\nbad id,2\ngood-2,-3\n")

    result = run("import", str(source))

    assert result.exit_code == 1
    assert f"{source}:2: product id 'bad id'" in result.stderr
    assert f"{source}:3: quantity '-3'" in result.stderr
    assert "nothing was imported" in result.stderr
    assert run("export").stdout.splitlines() == ["product_id,quantity"]


def test_importing_twice_changes_nothing_the_second_time(url: str, tmp_path: Path) -> None:
    source = tmp_path / "stock.csv"
    source.write_text("".join(f"p{i},{i}\n" for i in range(25)))
    first = run("import", "--batch-size", "10", str(source))
    movements = _movement_count(url)

    second = run("import", str(source))

    assert first.exit_code == second.exit_code == 0
    assert "0 created, 0 updated, 25 unchanged" in second.stdout
    assert _movement_count(url) == movements == 25


def test_import_dry_run_writes_nothing(url: str, tmp_path: Path) -> None:
    source = tmp_path / "stock.csv"
    source.write_text("p,1\n")

    result = run("import", "--dry-run", str(source))

    assert result.exit_code == 0, result.output
    assert "1 would be created" in result.stdout
    assert _movement_count(url) == 0


def test_import_refuses_a_file_that_is_not_utf8(url: str, tmp_path: Path) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes("caf\xe9,1\n".encode("latin-1"))
    result = run("import", str(source))
    assert result.exit_code == 1
    assert "not UTF-8" in result.stderr


def test_check_reports_settings_without_secrets(url: str) -> None:
    result = run("check")

    assert result.exit_code == 0, result.output
    assert API_KEY not in result.output
    assert "API_KEYS = ops:***" in result.stdout
    assert "database: ok" in result.stdout
    assert "schema: at head" in result.stdout
    assert "products: disabled" in result.stdout


def test_check_probes_the_products_service_with_its_key(
    url: str, fake_products: FakeProductsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODUCTS_SERVICE_URL", fake_products.url)
    fake_products.required_api_key = "right-key"
    monkeypatch.setenv("PRODUCTS_API_KEY", "wrong-key")
    assert "products: unauthorized" in run("check").stdout
    monkeypatch.setenv("PRODUCTS_API_KEY", "right-key")

    result = run("check")

    assert result.exit_code == 0, result.output
    assert "products: ok" in result.stdout
    assert [request.path for request in fake_products.requests] == [READINESS_PROBE] * 2


def test_check_fails_on_a_database_behind_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", databases.sqlite_url(tmp_path / "empty.db"))
    result = run("check")
    assert result.exit_code == 1
    assert "schema: at nothing" in result.stdout
    assert "inventory migrate" in result.stdout


def _database_line(result: Result) -> str:
    [line] = [line for line in result.stdout.splitlines() if line.startswith("database: ")]
    return line


def test_check_says_in_one_line_why_the_database_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL on a port where nothing listens: refused at once, no server needed.
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:s3cret-pw@127.0.0.1:1/inventory")
    result = run("check")
    assert result.exit_code == 1
    assert _database_line(result) == (
        "database: unavailable (ConnectionRefusedError: [Errno 111] Connect call failed "
        "('127.0.0.1', 1))"
    )
    assert "schema: unknown" in result.stdout
    assert "s3cret-pw" not in result.output


def test_check_names_a_sqlite_directory_it_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", databases.sqlite_url(tmp_path / "gone" / "inventory.db"))
    result = run("check")
    assert result.exit_code == 1
    assert _database_line(result) == (
        "database: unavailable (OperationalError: unable to open database file)"
    )


@pytest.mark.skipif(databases.POSTGRES_URL is None, reason=databases.SKIP_POSTGRES_REASON)
def test_check_names_a_postgres_database_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = make_url(databases.unborn_postgres_url())
    # The server trusts local connections and ignores the password; the driver names the
    # database, which the password here happens to equal, so it is masked where it appears.
    name = url.database
    with_password = url.set(password=name).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", with_password)
    result = run("check")
    assert result.exit_code == 1
    assert _database_line(result) == (
        'database: unavailable (InvalidCatalogNameError: database "***" does not exist)'
    )


def test_migrate_brings_an_empty_database_to_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", databases.sqlite_url(tmp_path / "new.db"))
    assert run("migrate").exit_code == 0
    assert "schema: at head" in run("check").stdout


def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    result = run("check")
    assert result.exit_code == 1
    assert "invalid setting DATABASE_URL" in result.output


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stands in for the server's `serve`: records the server and where metrics would be
    written while it ran."""
    calls: list[dict[str, Any]] = []

    def fake_serve(server: MPServer) -> None:
        calls.append({"server": server, "metrics_dir": os.environ.get(MULTIPROCESS_ENV)})

    monkeypatch.setattr(MPServer, "serve", fake_serve)
    # Nothing listens, so whether the port is free on this machine is not the question here.
    monkeypatch.setattr(serve, "_check_port_is_free", lambda host, port: None)
    return calls


def test_serve_runs_granian_with_its_limits_and_without_its_access_log(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./inventory.db")
    result = run("serve")

    assert result.exit_code == 0, result.output
    [call] = served
    server: MPServer = call["server"]
    assert (server.target, server.interface) == ("app.main:app", Interfaces.ASGI)
    assert (server.bind_addr, server.bind_port, server.workers) == ("127.0.0.1", 8002, 1)
    assert server.log_access is False
    assert server.http1_settings is not None
    assert server.http1_settings.header_read_timeout == HEADER_READ_TIMEOUT_SECONDS * 1000
    assert server.http1_settings.max_buffer_size == MAX_HEADER_BYTES
    assert server.backpressure == BACKPRESSURE
    assert server.workers_kill_timeout == 30
    assert call["metrics_dir"] is None


def test_serve_with_workers_uses_a_fresh_metrics_directory(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./inventory.db")
    result = run("serve", "--workers", "3", "--port", "9000")

    assert result.exit_code == 0, result.output
    [call] = served
    assert call["server"].workers == 3
    assert call["metrics_dir"] is not None
    assert not Path(call["metrics_dir"]).exists()  # removed after the server stopped
    assert MULTIPROCESS_ENV not in os.environ


def test_serve_empties_a_named_metrics_directory(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    named = tmp_path / "metrics"
    named.mkdir()
    (named / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(named))
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./inventory.db")

    assert run("serve", "--workers", "2").exit_code == 0

    assert served[0]["metrics_dir"] == str(named)
    assert list(named.iterdir()) == []


def test_import_names_an_unreadable_record_instead_of_crashing(url: str, tmp_path: Path) -> None:
    source = tmp_path / "huge.csv"
    source.write_text("p,١٢\nq,1," + "x" * (129 * 1024) + "\n")

    result = run("import", str(source))

    assert result.exit_code == 1
    assert f"{source}:1: quantity '١٢'" in result.stderr
    assert f"{source}:2: unreadable CSV: field larger than field limit" in result.stderr
    assert "Traceback" not in result.output
    assert run("export").stdout.splitlines() == ["product_id,quantity"]


def test_import_refuses_reserved_ids_and_names_the_rule_each_id_broke(
    url: str, tmp_path: Path
) -> None:
    source = tmp_path / "ids.csv"
    source.write_text("ok,1\npurchase,2\n.hidden,3\npurchases,4\n")

    result = run("import", str(source))

    assert result.exit_code == 1
    assert (
        f"{source}:2: product id 'purchase': 'purchase' names the purchase routes; "
        "it cannot be a product id" in result.stderr
    )
    assert f"{source}:3: product id '.hidden': must start with a letter or a digit" in result.stderr
    assert f"{source}:4: product id 'purchases'" in result.stderr
    assert "3 bad rows; nothing was imported" in result.stderr
    assert run("export").stdout.splitlines() == ["product_id,quantity"]


def test_version_is_the_package_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"inventory {version('inventory')}\n"


@pytest.mark.parametrize("actor", ["", "x" * 129])
def test_an_actor_of_the_wrong_length_is_refused(tmp_path: Path, actor: str) -> None:
    source = tmp_path / "stock.csv"
    source.write_text("a,1\n")

    result = run("import", "--actor", actor, str(source))

    assert result.exit_code == 2
    assert "must be 1 to 128 characters long" in result.stderr
