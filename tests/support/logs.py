"""Reading what the service logged: every line of captured stdout, parsed as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every log line written to stdout since the last call; fails on a line that is not JSON."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]
