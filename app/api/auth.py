"""Who is calling: the `X-API-KEY` check, and the actor it found.

Deny by default: every path needs a key (once one is set) except the few public ones, so a
route added later is protected without anyone remembering to protect it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import problem_response
from app.core.errors import Unauthorized

# The probes, the metrics and the documentation; nothing else is public.
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
# Swagger UI's and ReDoc's scripts and styles, served by the service itself (fastapi-offline).
PUBLIC_ASSETS = "/static-offline-docs/"
ANONYMOUS = "anonymous"

# The scheme as OpenAPI states it (Swagger's "Authorize" button).
SCHEME_NAME = "ApiKey"
_SCHEME = {"type": "apiKey", "in": "header", "name": "X-API-KEY"}

# Where the middleware leaves the actor, in the request's state (`scope["state"]`).
_ACTOR = "actor"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_ASSETS)


def actor_of(scope: Scope) -> str | None:
    """The actor `ApiKeyMiddleware` let in; None when it refused the request or never ran."""
    actor: str | None = scope.get("state", {}).get(_ACTOR)
    return actor


def authenticated_actor(request: Request) -> str:
    actor = actor_of(request.scope)
    if actor is None:
        raise RuntimeError("no actor: ApiKeyMiddleware did not run for this request")
    return actor


class ApiKeyMiddleware:
    """Lets a request through only with a known `X-API-KEY`, unless its path is public or
    no key is set (then the actor is `anonymous`)."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[tuple[str, str]]) -> None:
        self.app = app
        self.keys = [(actor, _digest(key.encode())) for actor, key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        actor = self._actor(scope)
        if actor is None:
            error = Unauthorized(
                "A valid X-API-KEY header is required.", headers={"WWW-Authenticate": "ApiKey"}
            )
            await problem_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})[_ACTOR] = actor
        await self.app(scope, receive, send)

    def _actor(self, scope: Scope) -> str | None:
        if not self.keys or is_public(scope["path"]):
            return ANONYMOUS
        offered = _digest(Headers(scope=scope).get("x-api-key", "").encode("latin-1"))
        matched = None
        # Compare against every key so timing tells nothing about which one nearly matched.
        for actor, key in self.keys:
            if hmac.compare_digest(offered, key) and matched is None:
                matched = actor
        return matched


def document_api_key(app: FastAPI) -> None:
    """State in the app's OpenAPI document that every operation needs the key, but those of
    the public paths: the rule `ApiKeyMiddleware` applies, so the two cannot disagree.

    Written into the document rather than declared by a security dependency on the routes,
    which FastAPI would resolve on every request only to document it (docs/performance.md).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        if SCHEME_NAME not in schemes:  # the document is built once and kept
            schemes[SCHEME_NAME] = _SCHEME
            for path, operations in document.get("paths", {}).items():
                if not is_public(path):
                    for operation in operations.values():
                        operation["security"] = [{SCHEME_NAME: []}]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _digest(key: bytes) -> bytes:
    """Keys are compared as SHA-256 digests: `compare_digest` is constant-time only for
    equal lengths, and on raw keys would let timing tell the length of the real one."""
    return hashlib.sha256(key).digest()
