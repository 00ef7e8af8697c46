"""Query parameters that several lists share, declared once so the document says the same
of each."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.services.cursors import CURSOR_PATTERN

Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
# The pattern only documents the shape of what the service issues; the service itself tells
# an issued cursor from any other string (422), which no pattern can.
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        description="`next_cursor` of the previous page, as issued; any other value is 422.",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    ),
]
