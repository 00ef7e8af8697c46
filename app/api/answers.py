"""Answers that services computed (and may have stored for replay), sent as they are."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.services.answers import Answer

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Repeat the request with the same key to get the first answer again, "
        "with `Idempotent-Replayed: true`. Keys are kept at least 24 hours.",
    ),
]


def answer_response(answer: Answer) -> JSONResponse:
    headers = dict(answer.headers)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    media_type = PROBLEM_MEDIA_TYPE if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, answer.status, headers=headers, media_type=media_type)
