"""Opaque, tamper-evident page cursors, each bound to the list that issued it.

The signing key is no secret, so anyone can forge a cursor: the signature only tells a
cursor of this list from one edited by hand or issued by another list. What a cursor
carries is therefore checked like any other input before it reaches a query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from app.core.errors import ValidationFailed

_SIGNING_KEY = b"inventory-cursor-v1"

# What `encode_cursor` issues: unpadded base64url of a position (one byte at least) and a
# 12-byte signature, so 18 characters or more.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{18,}$"

Position = TypeVar("Position")


def list_scope(name: str, **filters: Any) -> str:
    """The scope of one list: its name and the filters that chose its items, so that a
    cursor of `?max_quantity=0` is refused by `?product_id=x`."""
    return name + json.dumps(filters, sort_keys=True, separators=(",", ":"))


def _signature(scope: str, payload: bytes) -> bytes:
    return hmac.new(_SIGNING_KEY, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:12]


def encode_cursor(scope: str, position: Any) -> str:
    payload = json.dumps(position, separators=(",", ":")).encode()
    token = payload + _signature(scope, payload)
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str, position: TypeAdapter[Position]) -> Position:
    """The position a cursor of `scope` stands for; 422 for anything this list did not issue."""
    try:
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, signature = token[:-12], token[-12:]
        if len(token) > 12 and hmac.compare_digest(signature, _signature(scope, payload)):
            return position.validate_json(payload, strict=True)
    except (ValueError, ValidationError):
        pass
    raise ValidationFailed(
        "The cursor was not issued by this list.",
        errors=[{"field": "cursor", "message": "Unknown cursor"}],
    )
