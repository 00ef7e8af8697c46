"""Schemathesis hooks for `make fuzz` (named in schemathesis.toml).

`If-Match` is documented with `format: etag`: schemathesis draws header values from letters
and digits only, so without a generator of its own it has no valid, quoted entity tag to
send, and sends an invalid one as if it were valid.

Schemathesis sends the same `Idempotency-Key` with many different bodies, which the contract
answers with 422 `idempotency-key-reuse` (tested in tests/api/test_idempotency.py); here
each valid key gets a suffix of its own per request, as a client would use a new key for
a new request, so the requests are judged on their bodies.

A valid `If-Match` names the stock level's current version: one drawn at random is a
well-formed tag of some other version, which the contract answers with 412, so nearly every
valid DELETE or adjustment would be refused. For a valid request the hook sends what a
client would, the ETag of a GET just before (or no `If-Match` when there is no stock level);
invalid requests keep their invalid tags.

Headers that frame the message (`Content-Length`, `Transfer-Encoding`, `Host`, `Connection`)
are no parameter of any operation; a malformed one that schemathesis happens to generate as
an extra header is refused by the HTTP server (400, plain text) before the API sees the
request, so they are left out.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.api.deps import IF_MATCH_PATTERN

schemathesis.openapi.format("etag", st.from_regex(IF_MATCH_PATTERN, fullmatch=True))

_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_requests = itertools.count()


_FRAMING = frozenset({"content-length", "transfer-encoding", "host", "connection"})


def _current_etag(case: Any) -> str | None:
    product_id = (case.path_parameters or {}).get("product_id")
    if not isinstance(product_id, str):
        return None
    url = f"{case.operation.schema.get_base_url()}/inventory/{quote(product_id, safe='')}"
    answer = httpx.get(url, headers={"X-API-KEY": os.environ["FUZZ_API_KEY"]}, timeout=10)
    return answer.headers.get("etag") if answer.status_code == 200 else None


def _is_valid(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    headers = case.headers or {}
    if_match = next((name for name in headers if name.lower() == "if-match"), None)
    if if_match is not None and _is_valid(case):
        etag = _current_etag(case)
        if etag is None:
            del headers[if_match]
        else:
            headers[if_match] = etag
    for name in [name for name in headers if name.lower() in _FRAMING]:
        del headers[name]
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and _KEY.fullmatch(value):
            suffix = f"-{next(_requests)}"
            headers[name] = value[: 255 - len(suffix)] + suffix
