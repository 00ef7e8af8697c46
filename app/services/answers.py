"""An HTTP answer as the services produce it, so it can be stored and replayed byte for byte."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core.errors import ProblemError, problem_body


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False

    @classmethod
    def of_problem(cls, error: ProblemError, request_id: str) -> Answer:
        return cls(error.status, problem_body(error, request_id), dict(error.headers))
