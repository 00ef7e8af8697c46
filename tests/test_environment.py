"""Tests build their apps from settings they give: neither the process environment nor a
`.env` in the working directory reaches them, and importing `app.main` builds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD = {"PRODUCTS_TIMEOUT_SECONDS": "0", "DATABASE_URL": "mysql://nowhere"}
TIMEOUT_SECONDS = 120


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / ".env").write_text("".join(f"{name}={value}\n" for name, value in BAD.items()))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **BAD, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def test_a_bad_environment_and_env_file_do_not_reach_the_tests(tmp_path: Path) -> None:
    test = "tests/api/test_stock.py::test_put_creates_a_stock_level_with_location_and_etag"
    result = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "sqlite", str(ROOT / test)],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_importing_app_main_reads_no_settings(tmp_path: Path) -> None:
    code = "import app.main; assert 'app' not in vars(app.main); print(app.main.create_app)"
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
