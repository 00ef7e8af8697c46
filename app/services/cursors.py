"""Opaque page cursors, each bound to the list that issued it by an integrity check.

The check is a keyed checksum whose key is fixed and public, not a secret: it tells a cursor
of this list from one that was cut short, edited by hand, or issued by another list or for
other filters, but anyone who reads this module can make one. That is not a security
boundary, and needs none: a cursor only says where a page starts in a list its caller may
read anyway. A fixed key keeps cursors valid across restarts, replicas and upgrades. What a
cursor carries is checked like any other input before it reaches a query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from app.core.errors import ValidationFailed

_CHECKSUM_KEY = b"inventory-cursor-v1"

# What `encode_cursor` issues: unpadded base64url of a position (one byte at least) and a
# 12-byte signature, so 18 characters or more.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{18,}$"

Position = TypeVar("Position")


def list_scope(name: str, **filters: Any) -> str:
    """The scope of one list: its name and the filters that chose its items, so that a
    cursor of `?max_quantity=0` is refused by `?product_id=x`."""
    return name + json.dumps(filters, sort_keys=True, separators=(",", ":"))


def _checksum(scope: str, payload: bytes) -> bytes:
    return hmac.new(_CHECKSUM_KEY, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:12]


def encode_cursor(scope: str, position: Any) -> str:
    payload = json.dumps(position, separators=(",", ":")).encode()
    token = payload + _checksum(scope, payload)
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str, position: TypeAdapter[Position]) -> Position:
    """The position a cursor of `scope` stands for; 422 for anything this list did not issue."""
    try:
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, checksum = token[:-12], token[-12:]
        if len(token) > 12 and hmac.compare_digest(checksum, _checksum(scope, payload)):
            return position.validate_json(payload, strict=True)
    except (ValueError, ValidationError):
        pass
    raise ValidationFailed(
        "The cursor was not issued by this list.",
        errors=[{"field": "cursor", "message": "Unknown cursor"}],
    )
