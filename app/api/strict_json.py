"""Request bodies are read as strict JSON (RFC 8259), not as Python's lenient dialect.

Python's parser takes `NaN` and `Infinity`, reads bytes as UTF-16 or UTF-32 when they look
like it and skips a UTF-8 byte order mark, and lets a repeated key silently overwrite the
first. RFC 8259 allows none of these on the wire: JSON between systems is UTF-8, without a
BOM. Parsers disagree about which of two equal keys wins, so a body with both means one
thing to a proxy that checked it and another to us; we refuse it. Bodies nested too deep,
or with integers too long to convert, are refused as invalid JSON as well.

A number with a fraction or an exponent is read as the `Decimal` its literal writes, never
rounded to a float: `0.99999999999999999999` stays short of 1 and `1e-400` above 0, so the
schemas can tell a whole number (`2.0`, `2e3`) from one that only rounds to it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import Request


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(body: bytes | str) -> Any:
    """Parse strict JSON; any refusal is a `json.JSONDecodeError`."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constants, parse_float=Decimal
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deep", "", 0) from None
    except ValueError as error:  # also the digit limit of int(), and undecodable bytes
        raise json.JSONDecodeError(str(error), "", 0) from None


class StrictJsonRequest(Request):
    """A request whose JSON body is parsed by `loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = loads(await self.body())
        return self._strict_json
