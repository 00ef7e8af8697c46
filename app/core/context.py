"""The request's context: its id (a context variable, set by `RequestContextMiddleware`) and
who is asking (`Caller`), for ledger entries and log lines."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def accept_request_id(candidate: str | None) -> str:
    """The caller's request id when it is well-formed, otherwise a new one."""
    if candidate is not None and _REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Caller:
    actor: str
    request_id: str
