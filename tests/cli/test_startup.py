"""The `inventory` command as a user runs it, in a subprocess: fast help, progress on a
terminal and off one, and start-up failures said in one line with a non-zero exit."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import databases
from devtools.servers import environment
from tests.support.service import API_KEY

TIMEOUT_SECONDS = 60


def inventory(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=environment(API_KEYS=f"ops:{API_KEY}", LOG_FORMAT="json", **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert result.stderr.splitlines() == [expected], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory without a `.env`, with the project importable from it."""
    (tmp_path / "app").symlink_to(Path(__file__).resolve().parents[2] / "app")
    return tmp_path


def test_help_imports_nothing_of_the_service() -> None:
    code = (
        "import sys, app.cli; "
        "heavy = ('sqlalchemy', 'uvicorn', 'pydantic', 'app.main'); "
        "print([name for name in heavy if name in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_help_describes_every_option_without_breaking_sentences(project: Path) -> None:
    result = inventory("serve", "--help", cwd=project, COLUMNS="200")
    assert result.returncode == 0
    assert "Port to listen on, 1 to 65535." in result.stdout
    check = inventory("check", "--help", cwd=project, COLUMNS="200").stdout
    # Paragraphs are rewrapped: the docstring's own line break (after "and the") is gone.
    assert "its schema and the products service" in " ".join(check.split())
    assert not [line for line in check.splitlines() if line.endswith("its schema and the")]


def test_migrate_into_a_missing_directory_is_one_line(project: Path) -> None:
    url = databases.sqlite_url(project / "missing" / "inventory.db")
    result = inventory("migrate", cwd=project, DATABASE_URL=url)
    assert_one_line_failure(
        result, f"cannot migrate the database: no directory {project / 'missing'}"
    )


def test_export_of_a_database_never_created_is_one_line_and_creates_nothing(
    project: Path,
) -> None:
    path = project / "inventory.db"
    result = inventory("export", cwd=project, DATABASE_URL=databases.sqlite_url(path))
    assert_one_line_failure(result, f"no database at {path}: run `inventory migrate` first")
    assert not path.exists()


def test_import_into_an_unmigrated_database_is_one_line(project: Path) -> None:
    path = project / "empty.db"
    path.touch()
    source = project / "stock.csv"
    source.write_text("a,1\n")
    result = inventory("import", str(source), cwd=project, DATABASE_URL=databases.sqlite_url(path))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("the database schema is at nothing, this version needs ")
    assert line.endswith(": run `inventory migrate` first")


def test_serve_on_a_port_in_use_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = inventory(
            "serve",
            "--port",
            str(port),
            cwd=project,
            DATABASE_URL=databases.sqlite_url(project / "x.db"),
        )
    assert_one_line_failure(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def _import_rows(project: Path, url: str, count: int) -> Path:
    assert inventory("migrate", cwd=project, DATABASE_URL=url).returncode == 0
    source = project / "stock.csv"
    source.write_text("".join(f"p{i},{i}\n" for i in range(count)))
    return source


def test_import_without_a_terminal_prints_progress_lines_and_one_summary(project: Path) -> None:
    url = databases.sqlite_url(project / "inventory.db")
    source = _import_rows(project, url, 50)

    result = inventory("import", "--batch-size", "5", str(source), cwd=project, DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("importing: ")]
    assert progress == [f"importing: {done}/50 rows ({done * 2}%)" for done in range(5, 51, 5)]
    assert "inventory.changed" not in result.stderr + result.stdout
    assert result.stderr.count('"inventory.imported"') == 1
    assert "50 created, 0 updated, 0 unchanged" in result.stdout


def test_progress_lines_fall_at_each_tenth_whatever_the_batch_size(project: Path) -> None:
    url = databases.sqlite_url(project / "inventory.db")
    source = _import_rows(project, url, 50)

    result = inventory("import", "--batch-size", "20", str(source), cwd=project, DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("importing: ")]
    assert progress == [f"importing: {done}/50 rows ({done * 2}%)" for done in range(5, 51, 5)]


def test_a_dry_run_logs_no_import(project: Path) -> None:
    url = databases.sqlite_url(project / "inventory.db")
    source = _import_rows(project, url, 10)

    result = inventory("import", "--dry-run", str(source), cwd=project, DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    assert "checking: 10/10 rows (100%)" in result.stderr
    assert "inventory.imported" not in result.stderr + result.stdout
    assert "10 would be created" in result.stdout


def test_export_into_a_missing_folder_is_one_line(project: Path) -> None:
    url = databases.sqlite_url(project / "inventory.db")
    _import_rows(project, url, 1)
    target = project / "no" / "such" / "x.csv"

    result = inventory("export", str(target), cwd=project, DATABASE_URL=url)

    assert_one_line_failure(result, f"cannot write {target}: No such file or directory")


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_an_unreadable_import_file_is_one_line(project: Path) -> None:
    """A process's own memory file opens, and its first read fails (nothing is mapped at 0):
    an unreadable file, even for root."""
    url = databases.sqlite_url(project / "inventory.db")
    _import_rows(project, url, 0)

    result = inventory("import", "/proc/self/mem", cwd=project, DATABASE_URL=url)

    assert_one_line_failure(
        result, "/proc/self/mem: cannot read it (Input/output error); nothing was imported"
    )


def test_import_on_a_terminal_shows_a_bar(project: Path) -> None:
    url = databases.sqlite_url(project / "inventory.db")
    source = _import_rows(project, url, 20)
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "import", "--batch-size", "5", str(source)],
            cwd=project,
            env=environment(DATABASE_URL=url, LOG_FORMAT="json", COLUMNS="80"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        stdout, _ = process.communicate(timeout=TIMEOUT_SECONDS)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side closed: everything was read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)

    assert process.returncode == 0
    shown = terminal.decode()
    assert "importing" in shown
    assert "100%" in shown
    assert "importing: " not in shown  # the bar, not the lines for pipes
    assert "inventory.changed" not in shown
    # The summary log line starts a line of its own, after the finished bar.
    [summary] = [line for line in shown.splitlines() if '"inventory.imported"' in line]
    assert summary.startswith("{"), repr(summary)
    assert b"20 created" in stdout


def test_help_shows_plain_defaults(project: Path) -> None:
    serve = inventory("serve", "--help", cwd=project, COLUMNS="200").stdout
    imports = inventory("import", "--help", cwd=project, COLUMNS="200").stdout
    assert "[default: 8002]" in serve
    assert "[default: 1000]" in imports
    assert "[default: cli]" in imports
    for shown in (serve, imports):
        assert "<=" not in shown
        assert ">=" not in shown
        assert "range>" not in shown
