"""Schemathesis hooks for `make fuzz` (named in schemathesis.toml).

`If-Match` is documented with `format: etag`: schemathesis draws header values from letters
and digits only, so without a generator of its own it has no valid, quoted entity tag to
send, and sends an invalid one as if it were valid.

Schemathesis sends the same `Idempotency-Key` with many different bodies, which the contract
answers with 422 `idempotency-key-reuse` (tested in tests/api/test_idempotency.py); here
each valid key gets a suffix of its own per request, as a client would use a new key for
a new request, so the requests are judged on their bodies.

Headers that frame the message (`Content-Length`, `Transfer-Encoding`, `Host`, `Connection`)
are no parameter of any operation; a malformed one that schemathesis happens to generate as
an extra header is refused by the HTTP server (400, plain text) before the API sees the
request, so they are left out.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

from app.api.deps import IF_MATCH_PATTERN

schemathesis.openapi.format("etag", st.from_regex(IF_MATCH_PATTERN, fullmatch=True))

_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_requests = itertools.count()


_FRAMING = frozenset({"content-length", "transfer-encoding", "host", "connection"})


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    headers = case.headers or {}
    for name in [name for name in headers if name.lower() in _FRAMING]:
        del headers[name]
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and _KEY.fullmatch(value):
            suffix = f"-{next(_requests)}"
            headers[name] = value[: 255 - len(suffix)] + suffix
