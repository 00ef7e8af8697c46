"""Opaque, tamper-evident page cursors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from app.core.errors import ValidationFailed

# Not a secret: the signature only tells cursors we issued from ones we did not.
_SIGNING_KEY = b"inventory-cursor-v1"


def _signature(scope: str, payload: bytes) -> bytes:
    return hmac.new(_SIGNING_KEY, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:12]


def encode_cursor(scope: str, position: Any) -> str:
    payload = json.dumps(position, separators=(",", ":")).encode()
    token = payload + _signature(scope, payload)
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str) -> Any:
    """The position a cursor of `scope` stands for; 422 for anything we did not issue."""
    try:
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, signature = token[:-12], token[-12:]
        if len(token) > 12 and hmac.compare_digest(signature, _signature(scope, payload)):
            return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValidationFailed(
        "The cursor was not issued by this service.",
        errors=[{"field": "cursor", "message": "Unknown cursor"}],
    )
