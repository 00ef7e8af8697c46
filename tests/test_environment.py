"""Tests build their apps from settings they give: neither the process environment nor a
`.env` in the working directory reaches them, nor the processes they start, and importing
`app.main` builds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devtools import databases
from devtools.servers import environment, running_service, start

ROOT = Path(__file__).resolve().parents[1]
BAD = {"PRODUCTS_TIMEOUT_SECONDS": "0", "DATABASE_URL": "mysql://nowhere"}
TIMEOUT_SECONDS = 120


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (cwd / ".env").write_text("".join(f"{name}={value}\n" for name, value in BAD.items()))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **BAD, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def test_a_bad_environment_and_env_file_do_not_reach_the_tests(tmp_path: Path) -> None:
    # An app built from given settings, and start-up refusing settings the test sets.
    tests = [
        "tests/api/test_stock.py::test_put_creates_a_stock_level_with_location_and_etag",
        "tests/api/test_http.py::test_a_bad_setting_stops_start_up_with_one_line_naming_it",
    ]
    pytest_args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "pytest_asyncio.plugin",
        "-k",
        "sqlite or stops_start_up",
    ]
    # Only the plugin these tests need: loading every installed one costs seconds.
    result = _run(
        ["-m", "pytest", *pytest_args, *(str(ROOT / test) for test in tests)],
        tmp_path,
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_importing_app_main_reads_no_settings(tmp_path: Path) -> None:
    code = "import app.main; assert 'app' not in vars(app.main); print(app.main.create_app)"
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A developer's settings, in a `.env` of the working directory and in the environment:
    a key, another database, another products service, an allowed origin."""
    settings = {
        "API_KEY": "supersecret",
        "DATABASE_URL": databases.sqlite_url(tmp_path / "developer.db"),
        "PRODUCTS_SERVICE_URL": "http://127.0.0.1:9",
        "CORS_ORIGINS": "https://developer.example",
    }
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    monkeypatch.chdir(tmp_path)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.mark.usefixtures("hostile")
def test_a_process_a_test_starts_reads_no_setting_it_was_not_given() -> None:
    code = (
        "from app.core.config import load_settings; s = load_settings(); "
        "print(s.database_url, s.actor_keys(), s.products_service_url, s.cors_origins)"
    )
    process = start(
        [sys.executable, "-c", code], environment(DATABASE_URL="sqlite://"), stdout=subprocess.PIPE
    )
    stdout, _ = process.communicate(timeout=TIMEOUT_SECONDS)

    assert stdout.decode().split() == ["sqlite://", "[]", "None", "[]"]


@pytest.mark.slow
def test_a_service_a_test_starts_ignores_the_developers_env_file_and_environment(
    hostile: dict[str, str], tmp_path: Path, sqlite_template: Path
) -> None:
    url = databases.fresh_sqlite(sqlite_template, tmp_path)
    with running_service(url, workers=1) as base_url:
        answer = httpx.get(
            f"{base_url}/inventory", headers={"Origin": "https://developer.example"}, timeout=10
        )

    assert answer.status_code == 200, answer.text  # no key asked for
    assert "access-control-allow-origin" not in answer.headers
    assert not (tmp_path / "developer.db").exists()
