"""The shell examples of the documentation, run as a reader runs them.

The convention, which the documents state for their readers too:

- A ```sh (or ```bash) block that names the service's address (`127.0.0.1:8002`) or the local
  webhook receiver's (`127.0.0.1:8004`) is an example; the blocks of a document run in order,
  against one fresh service started as `make run` starts it (or as the document's
  `<!-- examples: … -->` line says). Other blocks (installing, Docker) are not run.
- `# → 201 {"quantity": 17, …}` after a command is its answer: the status, then the fields
  that must be there with those values. `…` stands for fields not shown, `"…"` for a value
  that varies (an id, a time). An answer may continue on the next comment lines.
- `NAME=$(…)` keeps what the command prints for the commands after it, as a shell would; a
  command ending in `&` runs in the background until the document is done.

Addresses are moved to free loopback ports; nothing else in a command is changed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "127.0.0.1:8002"
RECEIVER = "127.0.0.1:8004"
ANY = "\x00any"
# A read whose answer is not there yet (a webhook delivery still on its way) is asked again
# for this long before the example fails.
SETTLE_SECONDS = 15.0
COMMAND_TIMEOUT_SECONDS = 30.0

_ARROW = re.compile(r"^#\s*→\s*(?P<status>\d{3})?\s*(?P<body>.*)$")
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)=\$\((?P<command>.*)\)$", re.DOTALL)
_FENCE = re.compile(r"^```(\w*)\s*$")
_SETUP = re.compile(r"<!--\s*examples:\s*(?P<setup>.*?)\s*-->")


@dataclass
class Expected:
    status: int | None
    body: Any
    text: str


@dataclass
class Command:
    where: str
    text: str
    block: int = 0
    expected: Expected | None = None


@dataclass
class Answer:
    status: int | None
    headers: str
    body: str


@dataclass
class Document:
    path: Path
    setup: list[str]
    commands: list[Command] = field(default_factory=list)


def read(path: Path) -> Document:
    """The document's examples, in order, and its setup line."""
    text = path.read_text(encoding="utf-8")
    setup = _SETUP.search(text)
    document = Document(path, setup["setup"].split() if setup else [])
    lines = text.splitlines()
    block: list[tuple[int, str]] | None = None
    for number, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if block is None and fence and fence[1] in ("sh", "bash"):
            block = []
        elif block is not None and line.startswith("```"):
            if any(SERVICE in code or RECEIVER in code for _, code in block):
                number_of_block = len({command.block for command in document.commands})
                for command in _commands(path, block):
                    command.block = number_of_block
                    document.commands.append(command)
            block = None
        elif block is not None:
            block.append((number, line))
    return document


def _commands(path: Path, block: list[tuple[int, str]]) -> Iterator[Command]:
    command: Command | None = None
    pending: list[str] = []
    expecting: list[str] | None = None
    for number, line in block:
        stripped = line.strip()
        if expecting is not None and stripped.startswith("#") and not _complete(expecting):
            expecting.append(stripped.lstrip("#"))
            continue
        if expecting is not None and command is not None:
            command.expected = _expected(expecting)
            expecting = None
        if pending:
            pending.append(line)
            if not line.endswith("\\"):
                command = Command(f"{path.name}:{number}", "\n".join(pending))
                pending = []
                yield command
            continue
        if not stripped:
            continue
        if stripped.startswith("#"):
            if _ARROW.match(stripped):
                expecting = [stripped]
            continue
        if line.endswith("\\"):
            pending = [line]
            continue
        command = Command(f"{path.name}:{number}", line)
        yield command
    if expecting is not None and command is not None:
        command.expected = _expected(expecting)


def _complete(parts: list[str]) -> bool:
    """Whether the answer written so far is whole (its JSON closes)."""
    try:
        _expected(parts)
    except ValueError:
        return False
    return True


def _expected(parts: list[str]) -> Expected:
    arrow = _ARROW.match(parts[0])
    assert arrow is not None
    text = " ".join([arrow["body"], *parts[1:]]).strip()
    status = int(arrow["status"]) if arrow["status"] else None
    body = json.loads(_without_ellipses(text)) if text else None
    return Expected(status, body, " ".join(parts))


def _without_ellipses(text: str) -> str:
    text = text.replace('"…"', json.dumps(ANY))
    text = re.sub(r",\s*…", "", text)
    return re.sub(r"…\s*,?", "", text)


def matches(expected: Any, actual: Any) -> bool:
    """Every field shown is there with that value; lists have the elements shown, in order."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(type(expected) is type(actual) and expected == actual) or (
        isinstance(expected, int | float)
        and not isinstance(expected, bool)
        and isinstance(actual, int | float)
        and not isinstance(actual, bool)
        and expected == actual
    )


def parse_answer(output: str) -> Answer:
    """What `curl -i` printed (status line, headers, body), or a plain body."""
    if not output.startswith("HTTP/"):
        return Answer(None, "", output)
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    return Answer(int(head.split()[1]), head, body)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds:g} s")


class Shell:
    """Runs the commands of one document in order, with the variables they set."""

    def __init__(self, env: dict[str, str], addresses: dict[str, str]) -> None:
        self.env = env
        self.addresses = addresses
        self.background: list[subprocess.Popen[bytes]] = []

    def _text(self, command: Command) -> str:
        text = command.text
        for written, real in self.addresses.items():
            text = text.replace(written, real)
        return text

    def run(self, command: Command) -> None:
        text = self._text(command)
        assignment = _ASSIGNMENT.match(text)
        if assignment:
            self.env[assignment["name"]] = self._output(assignment["command"], command).rstrip("\n")
            return
        if text.rstrip().endswith("&"):
            self._start(text.rstrip().removesuffix("&"), command)
            return
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            output = self._output(text, command)
            for written, real in self.addresses.items():
                output = output.replace(real, written)
            answer = parse_answer(output)
            problem = self._mismatch(command, answer)
            if problem is None:
                return
            if not _is_read(text) or time.monotonic() > deadline:
                raise AssertionError(problem)
            time.sleep(0.2)

    def _mismatch(self, command: Command, answer: Answer) -> str | None:
        expected = command.expected
        if expected is None:
            return None
        where = f"{command.where}: {command.text}\n  documented: {expected.text}\n"
        if expected.status is not None and answer.status != expected.status:
            return f"{where}  got status {answer.status}: {answer.body}"
        if expected.body is None:
            return None
        try:
            actual = json.loads(answer.body)
        except ValueError:
            return f"{where}  got no JSON: {answer.body!r}"
        if not matches(expected.body, actual):
            return f"{where}  got: {answer.body}"
        return None

    def _output(self, text: str, command: Command) -> str:
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail\n{text}"],
            env=self.env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            cwd=PROJECT_ROOT,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{command.where}: exit {done.returncode}: {command.text}\n"
                f"{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode()

    def _start(self, text: str, command: Command) -> None:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {text}"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        self.background.append(process)
        for written, real in self.addresses.items():
            if written in command.text:
                wait_for_port(int(real.rsplit(":", 1)[1]))

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


def _is_read(text: str) -> bool:
    return "curl" in text and not re.search(r"\s-X\s*(?!GET)[A-Z]+", text) and " -d" not in text


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a reader's shell in a fresh clone: no setting of the service but
    the ones given, this virtualenv first on the PATH."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **settings,
    }


class Service:
    """The service as `make run` starts it (`inventory migrate`, then `inventory serve`), in
    a directory of its own, on a free loopback port; stopped by its PID."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run(
            [*cli, "migrate"],
            env=self.env,
            cwd=self.home,
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
        )
        self.process = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, seconds=60)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
