"""What the products service answers, read with care: a capped body, strict JSON, one product.

Nothing here knows about retries or the circuit: a body that cannot be read raises
`UnreadablePayload`, and the catalog decides what that means.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx

# A product is a small document. What is read of an answer, and how deeply it may nest, is
# capped so that a broken or hostile catalog cannot make us hold, parse or echo a huge one.
MAX_PRODUCT_BYTES = 1024 * 1024
MAX_PRODUCT_DEPTH = 32
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A body made of these JSON:API top-level members only is an envelope around the product.
_DOCUMENT_MEMBERS = frozenset({"data", "meta", "links", "included", "jsonapi"})
# A `data` object made of these members only is a JSON:API resource object.
_RESOURCE_MEMBERS = frozenset({"id", "lid", "type", "attributes", "relationships", "links", "meta"})


class UnreadablePayload(Exception):
    """An answer we refuse to read or hand on; the message says what is wrong with it."""


async def read_capped(response: httpx.Response) -> bytes:
    """The raw body, refused when it is larger than MAX_PRODUCT_BYTES or compressed.

    We ask for `identity`; a catalog that compresses anyway is not inflated at all, so a
    small answer cannot unpack into gigabytes.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnreadablePayload(f"it answered with {encoding} encoding")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_PRODUCT_BYTES:
        raise UnreadablePayload(f"its answer is larger than {MAX_PRODUCT_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > MAX_PRODUCT_BYTES:
            raise UnreadablePayload(f"its answer is larger than {MAX_PRODUCT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_product_body(body: bytes) -> object:
    """Strict JSON (UTF-8, no NaN or Infinity) that we can hand on unchanged: nested at most
    MAX_PRODUCT_DEPTH deep, finite numbers, and strings that UTF-8 can encode. Anything
    else raises `UnreadablePayload`, so nothing the catalog says can fail a response of ours."""
    try:
        parsed: object = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise UnreadablePayload("it answered 200 with a body that is not JSON") from error
    problem = _unrepresentable(parsed)
    if problem is not None:
        raise UnreadablePayload(f"it answered 200 with {problem}")
    return parsed


def _unrepresentable(document: object) -> str | None:
    """What in a parsed JSON document we could not echo, or None. Iterative, so depth is ours
    to bound rather than the interpreter's recursion limit."""
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_PRODUCT_DEPTH:
                return f"a body nested deeper than {MAX_PRODUCT_DEPTH} levels"
            members = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((member, depth + 1) for member in members)
        elif isinstance(value, str) and _LONE_SURROGATE.search(value):
            return "a string holding a lone surrogate"
        elif isinstance(value, float) and not math.isfinite(value):
            return "a number too large to represent"
    return None


def flatten_product(body: object, product_id: str) -> dict[str, Any] | None:
    """One flat product from a plain, `{"data": …}` or JSON:API body; None if it holds none,
    or if its `id` is no id (neither a non-empty string nor an integer: `1.5`, `true`, `null`,
    an object), which names no product.

    The `id` is always a string: the body's own id (integers become their decimal string),
    or the id that was asked for when the body carries none.
    """
    if not isinstance(body, dict):
        return None
    resource: object = body
    # Only a body that is nothing but an envelope is unwrapped, so a plain product that
    # happens to have a field called `data` stays what it is.
    if "data" in body and body.keys() <= _DOCUMENT_MEMBERS:
        resource = body["data"]
    if not isinstance(resource, dict):
        return None
    attributes = resource.get("attributes")
    if isinstance(attributes, dict) and resource.keys() <= _RESOURCE_MEMBERS:
        product = dict(attributes)
    else:
        product = dict(resource)
    if "id" not in resource:
        product["id"] = product_id
        return product
    raw = resource["id"]
    if isinstance(raw, str) and raw:
        product["id"] = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        product["id"] = str(raw)
    else:
        return None
    return product
